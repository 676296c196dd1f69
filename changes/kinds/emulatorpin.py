"""``emulatorpin``: pin the VM's emulator threads to a set of host CPUs (``virsh
emulatorpin``), in the change's scope."""

from __future__ import annotations

from typing import Any

from changes.kinds.base import Requested, VmKind
from changes.kinds.fields import Errors, cpuset_field, same_set
from changes.kinds.words import scope_words, word
from changes.models import Change
from numaportal.virt import pinning
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.scope import Scope


def emulator_problems(after: dict[str, Any], cpuset: str, part: str) -> list[str]:
    """The read-back problem of the emulator pin in one part of the scope, if any."""
    got = after.get(f"emulatorpin_{part}")
    if same_set(got, cpuset):
        return []
    return [f"emulator affinity is {word(got)} {part}, not {cpuset}"]


class EmulatorPin(VmKind):
    name = Change.Kind.EMULATORPIN

    def validate(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        cpus = cpuset_field(asked.params.get("cpuset"), "cpuset", errors, asked.topology)
        return {} if cpus is None else {"cpuset": format_cpuset(cpus)}

    def apply(self, handle: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
        params, scope = change.params, change.scope
        pinning.pin_emulator(handle, params["cpuset"], scope)
        return "", f"emulator pinned to {params['cpuset']} {scope_words(scope)}"

    def verify(self, change: Change, after: dict[str, Any]) -> list[str]:
        return [
            problem
            for part in Scope(change.scope).parts
            for problem in emulator_problems(after, change.params["cpuset"], part)
        ]


KIND = EmulatorPin()
