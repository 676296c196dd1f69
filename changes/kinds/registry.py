"""The kinds of change, by their ``Change.Kind`` value: the one place the worker, the
validation, the forms and the filters look a kind up.

``Change.Kind`` is the list (its values are stored, its labels shown); this module maps each
value to the module that implements it, in the same order. ``tests/unit/test_kinds.py`` checks
that the two match exactly.
"""

from __future__ import annotations

from changes.kinds import (
    balancing_policy,
    emulatorpin,
    guest_vcpus,
    memory_move,
    numa_balancing,
    numatune,
    plan_move,
    setvcpus,
    vcpupin,
    vm_flags,
)
from changes.kinds.base import ChangeKind
from changes.models import Change

__all__ = ["all", "choices", "find", "get", "requestable"]

_MODULES = (
    vcpupin,
    emulatorpin,
    numatune,
    setvcpus,
    guest_vcpus,
    numa_balancing,
    plan_move,
    memory_move,
    vm_flags,
    balancing_policy,
)
_KINDS: dict[str, ChangeKind] = {
    kind.name: kind
    for kind in sorted((m.KIND for m in _MODULES), key=lambda k: Change.Kind.values.index(k.name))
}


def find(name: object) -> ChangeKind | None:
    """The kind registered as *name*; None for anything else (a bad request, an old record)."""
    return _KINDS.get(name) if isinstance(name, str) else None


def get(name: str) -> ChangeKind:
    """The kind registered as *name*; KeyError naming the known kinds otherwise."""
    kind = find(name)
    if kind is None:
        raise KeyError(f"unknown kind of change {name!r}: expected one of {', '.join(_KINDS)}")
    return kind


def all() -> tuple[ChangeKind, ...]:  # shadows the builtin in this module only: unused here
    """Every kind, in ``Change.Kind`` order."""
    return tuple(_KINDS.values())


def requestable() -> tuple[ChangeKind, ...]:
    """The kinds ``request_change`` takes, in ``Change.Kind`` order."""
    return tuple(kind for kind in _KINDS.values() if kind.requestable)


def choices() -> list[tuple[str, str]]:
    """(value, label) of every kind, for a choice field."""
    return [(kind.name, Change.Kind(kind.name).label) for kind in _KINDS.values()]
