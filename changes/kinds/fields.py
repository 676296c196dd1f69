"""Parsing one requested parameter, with the problem named under its form field.

The kinds' ``validate`` hooks share these: each takes the raw value, the field name and an
:class:`Errors`, and returns the parsed value or None after adding the reason under that field,
so a form shows it next to the field. :func:`same_set` compares a read-back set with the
requested one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from numaportal.bounds import parse_whole
from numaportal.virt.cpuset import (
    CpusetError,
    format_cpuset,
    format_nodeset,
    parse_cpuset,
    parse_nodeset,
)
from numaportal.virt.topology import HostTopology

__all__ = ["Errors", "bool_field", "cpuset_field", "int_field", "nodeset_field", "same_set"]


class Errors:
    """Messages by field name (``__all__`` for the target as a whole), raised together."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)

    def __contains__(self, field: str) -> bool:
        return field in self.errors

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


#: Longest whole number of a parameter given as text (vCPU numbers and counts are small).
INT_TEXT_MAX = 999_999


def int_field(value: Any, field: str, errors: Errors, *, minimum: int = 0) -> int | None:
    """A whole number (an int, or ASCII digits as text) of at least *minimum*; bool is refused.

    Text is ``[0-9]`` only, as the cpuset fields read it: ``str.isdigit()`` is also true for
    Arabic-Indic or fullwidth digits (which ``int()`` takes) and for "\u00b2" (which it
    refuses with a ValueError)."""
    if isinstance(value, bool):
        errors.add(field, f"expected a whole number, not {value!r}")
        return None
    if isinstance(value, str):
        parsed = parse_whole(value, maximum=INT_TEXT_MAX)
        if parsed is None:
            errors.add(field, f"expected a whole number, not {value!r}")
            return None
        value = parsed
    if not isinstance(value, int):
        errors.add(field, f"expected a whole number, not {value!r}")
        return None
    if value < minimum:
        errors.add(field, f"must be at least {minimum}, not {value}")
        return None
    return value


def bool_field(value: Any, field: str, errors: Errors) -> bool | None:
    """True or False, also as the words a form or a query string sends."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "on", "yes"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "off", "no"}:
        return False
    errors.add(field, f"expected true or false, not {value!r}")
    return None


@dataclass(frozen=True)
class _Ids:
    """One kind of host id set: how to parse and write it, what its ids are called."""

    parse: Callable[[str], frozenset[int]]
    format: Callable[[Iterable[int]], str]
    what: str
    required: str
    known: Callable[[HostTopology], frozenset[int]]


_CPUS = _Ids(
    parse_cpuset, format_cpuset, "CPU", "a cpuset is required, e.g. 0-3,8", lambda t: t.cpu_ids
)
_NODES = _Ids(
    parse_nodeset,
    format_nodeset,
    "NUMA node",
    "a nodeset is required, e.g. 0 or 0-1",
    lambda t: t.cell_ids,
)


def _id_set(
    value: Any, field: str, errors: Errors, topology: HostTopology | None, ids: _Ids
) -> frozenset[int] | None:
    """Ids in virsh syntax, every one of them on the host (when the host's ids are known)."""
    if not isinstance(value, str) or not value.strip():
        errors.add(field, ids.required)
        return None
    try:
        parsed = ids.parse(value.strip())
    except CpusetError as exc:
        errors.add(field, str(exc))
        return None
    known = ids.known(topology) if topology is not None else frozenset()
    missing = parsed - known if known else frozenset()
    if missing:
        plural = len(missing) > 1
        errors.add(
            field,
            f"{ids.what}{'s' if plural else ''} {ids.format(missing)} "
            f"do{'' if plural else 'es'} not exist on this host (it has {ids.format(known)})",
        )
        return None
    return parsed


def cpuset_field(
    value: Any, field: str, errors: Errors, topology: HostTopology | None
) -> frozenset[int] | None:
    """Host CPUs in virsh syntax, every one of them on the host (when its CPUs are known)."""
    return _id_set(value, field, errors, topology, _CPUS)


def nodeset_field(
    value: Any, field: str, errors: Errors, topology: HostTopology | None
) -> frozenset[int] | None:
    """Host NUMA nodes in virsh syntax, every one on the host (when its cells are known)."""
    return _id_set(value, field, errors, topology, _NODES)


def same_set(text: str | None, wanted: str, *, nodes: bool = False) -> bool:
    """Whether a read-back cpuset (nodeset) names the same ids as the requested one."""
    if not text:
        return False
    try:
        parse = parse_nodeset if nodes else parse_cpuset
        return parse(text) == parse(wanted)
    except CpusetError:
        return False
