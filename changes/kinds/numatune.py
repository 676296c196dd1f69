"""``numatune``: bind the VM's memory to host NUMA nodes in a mode (``virsh numatune``), in the
change's scope. libvirt refuses a new strict nodeset for a running domain (the form warns)."""

from __future__ import annotations

from typing import Any

from changes.kinds.base import Requested, VmKind
from changes.kinds.fields import Errors, nodeset_field, same_set
from changes.kinds.words import scope_words, word
from changes.models import Change
from numaportal.virt import numatune
from numaportal.virt.cpuset import format_nodeset
from numaportal.virt.numatune import NUMATUNE_MODES
from numaportal.virt.scope import Scope


def mode_field(value: Any, field: str, errors: Errors) -> str | None:
    """One of libvirt's numatune modes."""
    if isinstance(value, str) and value in NUMATUNE_MODES:
        return value
    errors.add(field, f"unknown mode {value!r}: expected one of {', '.join(NUMATUNE_MODES)}")
    return None


def numatune_problems(tuning: dict[str, Any], mode: str, nodeset: str, part: str) -> list[str]:
    """The read-back problem of the memory binding in one part of the scope, if any."""
    got_mode, got_nodeset = tuning.get("numatune_mode"), tuning.get("numatune_nodeset")
    if got_mode == mode and same_set(got_nodeset, nodeset, nodes=True):
        return []
    return [f"numatune is {word(got_mode)} {word(got_nodeset)} {part}, not {mode} {nodeset}"]


class Numatune(VmKind):
    name = Change.Kind.NUMATUNE

    def validate(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        mode = mode_field(asked.params.get("mode"), "mode", errors)
        nodes = nodeset_field(asked.params.get("nodeset"), "nodeset", errors, asked.topology)
        if mode is None or nodes is None:
            return {}
        return {"mode": mode, "nodeset": format_nodeset(nodes)}

    def apply(self, handle: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
        params, scope = change.params, change.scope
        numatune.set_numatune(handle, params["mode"], params["nodeset"], scope)
        return "", (
            f"memory placement {params['mode']} on node(s) {params['nodeset']} {scope_words(scope)}"
        )

    def verify(self, change: Change, after: dict[str, Any]) -> list[str]:
        params = change.params
        return [
            problem
            for part in Scope(change.scope).parts
            for problem in numatune_problems(
                after.get(f"{part}_tuning") or {}, params["mode"], params["nodeset"], part
            )
        ]


KIND = Numatune()
