"""``vcpupin``: pin one vCPU to a set of host CPUs (``virsh vcpupin``), in the change's scope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from changes.kinds.base import Requested, VmKind
from changes.kinds.facts import VmFacts
from changes.kinds.fields import Errors, cpuset_field, int_field, same_set
from changes.kinds.words import scope_words, word
from changes.models import Change
from numaportal.virt import pinning
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.scope import Scope


def vcpu_field(
    value: Any, facts: VmFacts, scope: str, errors: Errors, *, field: str = "vcpu"
) -> int | None:
    """A vCPU index that exists in every part of *scope* (checked once the scope is valid)."""
    vcpu = int_field(value, field, errors)
    if vcpu is not None and "scope" not in errors:
        for part, maximum in facts.maxima(scope):
            if vcpu >= maximum:
                errors.add(
                    field,
                    f"vCPU {vcpu} does not exist: the {part} maximum is {maximum} vCPUs "
                    f"(0-{maximum - 1})",
                )
                break
    return vcpu


def pin_problems(pins: Mapping[str, Any], vcpu: Any, cpuset: str, part: str) -> list[str]:
    """The read-back problem of one vCPU's pin in one part of the scope, if any."""
    got = pins.get(str(vcpu))
    if same_set(got, cpuset):
        return []
    return [f"vCPU {vcpu} is pinned to {word(got)} {part}, not {cpuset}"]


class VcpuPin(VmKind):
    name = Change.Kind.VCPUPIN

    def validate(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        vcpu = vcpu_field(asked.params.get("vcpu"), asked.facts, asked.scope, errors)
        cpus = cpuset_field(asked.params.get("cpuset"), "cpuset", errors, asked.topology)
        if vcpu is None or cpus is None:
            return {}
        return {"vcpu": vcpu, "cpuset": format_cpuset(cpus)}

    def apply(self, handle: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
        params, scope = change.params, change.scope
        pinning.pin_vcpu(handle, params["vcpu"], params["cpuset"], scope)
        return "", f"vCPU {params['vcpu']} pinned to {params['cpuset']} {scope_words(scope)}"

    def verify(self, change: Change, after: dict[str, Any]) -> list[str]:
        params, problems = change.params, []
        for part in Scope(change.scope).parts:
            pins = (after.get(f"{part}_tuning") or {}).get("vcpupin") or {}
            problems += pin_problems(pins, params["vcpu"], params["cpuset"], part)
        return problems


KIND = VcpuPin()
