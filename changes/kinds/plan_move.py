"""``plan_move``: one VM's move from a balancing plan — vcpupin of every vCPU and emulatorpin
in the change's scope, then numatune in the config.

Recorded by :mod:`balancing.apply` (one per moved VM, ``group_id`` = the plan's id) with params
from the planner's assignment: ``{"plan", "step", "cells", "vcpupin": {vcpu: cpuset},
"emulatorpin", "mode", "nodeset"}``. Not requestable alone; :meth:`PlanMove.validate` states the
same rules against the stored topology as the single-step kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from changes.kinds.base import Requested, VmKind
from changes.kinds.emulatorpin import emulator_problems
from changes.kinds.fields import Errors, cpuset_field, nodeset_field
from changes.kinds.numatune import mode_field, numatune_problems
from changes.kinds.vcpupin import pin_problems, vcpu_field
from changes.kinds.words import scope_words
from changes.models import Change
from numaportal.virt import numatune, pinning
from numaportal.virt.cpuset import format_cpuset, format_nodeset
from numaportal.virt.errors import VirtError
from numaportal.virt.scope import Scope

#: Passed through as the plan recorded them (which plan, which step, the cells in words).
_PLAN_KEYS = ("plan", "step", "cells")


class PlanMove(VmKind):
    name = Change.Kind.PLAN_MOVE
    requestable = False

    def validate(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        params, topology = asked.params, asked.topology
        pins = params.get("vcpupin")
        if not isinstance(pins, Mapping) or not pins:
            errors.add("vcpupin", f"a cpuset per vCPU is required, not {pins!r}")
            pins = {}
        vcpupin = {}
        for vcpu, cpuset in pins.items():
            index = vcpu_field(vcpu, asked.facts, asked.scope, errors, field="vcpupin")
            cpus = cpuset_field(cpuset, "vcpupin", errors, topology)
            if index is not None and cpus is not None:
                vcpupin[str(index)] = format_cpuset(cpus)
        emulator = cpuset_field(params.get("emulatorpin"), "emulatorpin", errors, topology)
        mode = mode_field(params.get("mode"), "mode", errors)
        nodes = nodeset_field(params.get("nodeset"), "nodeset", errors, topology)
        if "vcpupin" in errors or emulator is None or mode is None or nodes is None:
            return {}
        return {
            **{key: params[key] for key in _PLAN_KEYS if key in params},
            "vcpupin": vcpupin,
            "emulatorpin": format_cpuset(emulator),
            "mode": mode,
            "nodeset": format_nodeset(nodes),
        }

    def apply(self, handle: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
        """Every vcpupin, the emulatorpin (in the change's scope), then numatune in the config —
        libvirt refuses a new strict nodeset for a running domain, so the memory follows at the
        next boot."""
        params, scope, done = change.params, change.scope, []
        try:
            for vcpu, cpuset in sorted(params["vcpupin"].items(), key=lambda kv: int(kv[0])):
                pinning.pin_vcpu(handle, int(vcpu), cpuset, scope)
                done.append(f"vCPU {vcpu} -> {cpuset}")
            pinning.pin_emulator(handle, params["emulatorpin"], scope)
            done.append(f"emulator -> {params['emulatorpin']}")
            numatune.set_numatune(handle, params["mode"], params["nodeset"], Scope.CONFIG)
            done.append(f"numatune {params['mode']} {params['nodeset']} in the config")
        except VirtError as exc:
            return str(exc), ("done before the error: " + "; ".join(done)) if done else ""
        memory = (
            f"memory bound to node(s) {params['nodeset']} from the next boot (a running VM's "
            "memory stays where it is until then)"
        )
        return "", (
            f"placed on cell(s) {params.get('cells', params['nodeset'])} {scope_words(scope)}: "
            f"{', '.join(done[:-1])}; {memory}"
        )

    def verify(self, change: Change, after: dict[str, Any]) -> list[str]:
        params, problems = change.params, []
        for part in Scope(change.scope).parts:
            pins = (after.get(f"{part}_tuning") or {}).get("vcpupin") or {}
            for vcpu, cpuset in params["vcpupin"].items():
                problems += pin_problems(pins, vcpu, cpuset, part)
            problems += emulator_problems(after, params["emulatorpin"], part)
        # numatune went to the config only (see apply).
        config = after.get("config_tuning") or {}
        problems += numatune_problems(config, params["mode"], params["nodeset"], Scope.CONFIG)
        return problems


KIND = PlanMove()
