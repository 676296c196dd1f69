"""CPU and NUMA node sets in the syntax operators type: ``"18-23"``, ``"0,2,4-6"``, ``"0-7,^3"``.

This is the syntax of ``virsh vcpupin``/``emulatorpin``, of ``<vcpupin cpuset=...>`` and
``<numatune><memory nodeset=...>`` in domain XML, of ``siblings=`` in capabilities XML, and of
``numactl --physcpubind``. It reaches us from two untrusted directions (a browser form and a
hypervisor's XML), so parsing is strict and every failure is a :class:`CpusetError` that names
the offending part: the form shows that message next to the field.

libvirt's pin calls (``pinVcpuFlags``, ``pinEmulator``) take a *cpumap* instead: a tuple of
bools, one per host CPU. :func:`cpuset_to_cpumap` and :func:`cpumap_to_cpuset` convert, and the
former is where "that CPU does not exist on this host" is caught before a worker ever runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = [
    "MAX_CPU_ID",
    "CpusetError",
    "cpumap_to_cpuset",
    "cpuset_to_cpumap",
    "format_cpuset",
    "format_nodeset",
    "parse_cpuset",
    "parse_nodeset",
]

#: Largest id we accept. Linux's NR_CPUS tops out at 8192 (ids 0..8191) and libvirt sizes its
#: bitmaps the same way; anything above is a typo (or an attempt to make us allocate a huge
#: cpumap), not a real CPU.
MAX_CPU_ID = 8191

# A number is plain ASCII decimal. ``str.isdigit``/``int()`` would also accept "²" or Arabic-Indic
# digits, and ``int()`` accepts "+1", "1_0" and surrounding whitespace; none of those are cpuset
# syntax, so we match explicitly.
_NUMBER = re.compile(r"[0-9]+", re.ASCII)
# Longer digit strings than this are rejected before int() so that a hostile 100k-digit "id"
# neither costs quadratic conversion time nor trips Python's int-string-length ValueError.
_MAX_DIGITS = len(str(MAX_CPU_ID))
# Error messages quote the user's text; cap it so a megabyte of junk doesn't become a megabyte
# of error message in a log line or a form.
_MAX_QUOTED = 80


class CpusetError(ValueError):
    """A cpuset/nodeset string or a set of ids is not acceptable; the message says which part."""


def _quote(text: str) -> str:
    if len(text) > _MAX_QUOTED:
        text = text[:_MAX_QUOTED] + "..."
    return f"'{text}'"


def _parse_id(
    number: str, token: str, text: str, kind: str, id_word: str, *, role: str = ""
) -> int:
    """Convert one already-stripped number inside *token*, with errors that name the token."""
    where = f"in {kind} {_quote(text)}"
    what = f"{role} of range" if role else id_word + " id"
    if not number:
        raise CpusetError(f"invalid element {_quote(token)} {where}: missing {what}")
    if number.startswith("-"):
        raise CpusetError(
            f"invalid element {_quote(token)} {where}: negative {id_word} ids are not allowed"
        )
    if not _NUMBER.fullmatch(number):
        raise CpusetError(
            f"invalid element {_quote(token)} {where}: {_quote(number)} is not a decimal "
            f"{id_word} id"
        )
    significant = number.lstrip("0") or "0"
    if len(significant) > _MAX_DIGITS or int(significant) > MAX_CPU_ID:
        raise CpusetError(
            f"invalid element {_quote(token)} {where}: {id_word} id {_quote(number)} is larger "
            f"than the maximum {MAX_CPU_ID}"
        )
    return int(significant)


def _parse(text: object, kind: str, id_word: str) -> frozenset[int]:
    if not isinstance(text, str):
        raise CpusetError(f"{kind} must be a string, not {type(text).__name__}")
    if not text.strip():
        raise CpusetError(f"empty {kind}")

    included: set[int] = set()
    excluded: set[int] = set()
    elements = text.split(",")
    for position, raw in enumerate(elements, start=1):
        token = raw.strip()
        if not token:
            raise CpusetError(
                f"empty element at position {position} in {kind} {_quote(text)} "
                "(stray or trailing comma?)"
            )
        body = token
        negated = body.startswith("^")
        if negated:
            body = body[1:].strip()
        # "-1" is a negative number, not a range with a missing start: say so.
        if body.startswith("-") and _NUMBER.fullmatch(body[1:].strip()):
            _parse_id("-", token, text, kind, id_word)
        start_text, dash, end_text = body.partition("-")
        if dash:
            start = _parse_id(start_text.strip(), token, text, kind, id_word, role="start")
            end = _parse_id(end_text.strip(), token, text, kind, id_word, role="end")
            if start > end:
                raise CpusetError(
                    f"invalid range {_quote(token)} in {kind} {_quote(text)}: "
                    "start is greater than end"
                )
            ids = range(start, end + 1)
        else:
            ids = [_parse_id(body, token, text, kind, id_word)]
        (excluded if negated else included).update(ids)

    # Union of the positive elements minus every exclusion, wherever it appears: "^3,0-7" and
    # "0-7,^3" mean the same thing, which is what an operator reading either one expects.
    if not included:
        raise CpusetError(f"{kind} {_quote(text)} has only exclusions ('^N'); nothing is included")
    result = included - excluded
    if not result:
        raise CpusetError(f"{kind} {_quote(text)} excludes every {id_word} it includes")
    return frozenset(result)


def parse_cpuset(text: str) -> frozenset[int]:
    """Parse libvirt/numactl cpuset syntax (``"0-3,8,^2"``) into a non-empty set of CPU ids.

    Whitespace around elements, dashes and ``^`` is tolerated (``"0 - 3, 5"``) because people
    paste from ``lscpu`` and ``numactl -H``. Exclusions (``^N``, ``^N-M``) are removed from the
    union of all positive elements regardless of order. Anything else, including an empty
    result, raises :class:`CpusetError`; no other exception escapes for ``str`` input.
    """
    return _parse(text, "cpuset", "CPU")


def parse_nodeset(text: str) -> frozenset[int]:
    """Parse a NUMA nodeset (``<numatune nodeset=...>``); same syntax, errors say "nodeset"."""
    return _parse(text, "nodeset", "node")


def _check_ids(cpus: Iterable[int], kind: str, id_word: str) -> list[int]:
    ids: set[int] = set()
    for cpu in cpus:
        # bool is an int subclass; True as a CPU id is always a bug upstream.
        if not isinstance(cpu, int) or isinstance(cpu, bool):
            raise CpusetError(f"{id_word} id {cpu!r} in {kind} is not an integer")
        if cpu < 0:
            raise CpusetError(f"negative {id_word} id {cpu} in {kind}")
        if cpu > MAX_CPU_ID:
            raise CpusetError(f"{id_word} id {cpu} is larger than the maximum {MAX_CPU_ID}")
        ids.add(cpu)
    if not ids:
        raise CpusetError(f"empty {kind}")
    return sorted(ids)


def _format(cpus: Iterable[int], kind: str, id_word: str) -> str:
    ordered = _check_ids(cpus, kind, id_word)
    parts: list[str] = []
    run_start = previous = ordered[0]
    for cpu in [*ordered[1:], None]:
        if cpu is not None and cpu == previous + 1:
            previous = cpu
            continue
        # Any run of two or more becomes "a-b", as libvirt's virBitmapFormat writes it, so that
        # our output compares equal to what libvirt echoes back in dumpxml.
        parts.append(str(run_start) if run_start == previous else f"{run_start}-{previous}")
        if cpu is not None:
            run_start = previous = cpu
    return ",".join(parts)


def format_cpuset(cpus: Iterable[int]) -> str:
    """Canonical cpuset text: ascending, runs of 2+ as ``a-b`` (``{0,1,2,3,8}`` -> ``"0-3,8"``).

    Raises :class:`CpusetError` for an empty set, negative ids or ids above :data:`MAX_CPU_ID`.
    """
    return _format(cpus, "cpuset", "CPU")


def format_nodeset(nodes: Iterable[int]) -> str:
    """Canonical nodeset text; same rules as :func:`format_cpuset`."""
    return _format(nodes, "nodeset", "node")


def cpuset_to_cpumap(cpus: Iterable[int], width: int) -> tuple[bool, ...]:
    """Turn a cpuset into the cpumap libvirt's ``pinVcpuFlags``/``pinEmulator`` take.

    *width* is the number of host CPUs (ids ``0..width-1``). A CPU that is not on the host is an
    operator mistake that libvirt would report less clearly (or, in the test driver, silently
    truncate), so it is rejected here with the host's range in the message.
    """
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise CpusetError(f"cpumap width must be a positive number of host CPUs, not {width!r}")
    ids = _check_ids(cpus, "cpuset", "CPU")
    missing = [cpu for cpu in ids if cpu >= width]
    if missing:
        host = f"it has {width} CPU{'s' if width != 1 else ''}: {format_cpuset(range(width))}"
        if len(missing) == 1:
            raise CpusetError(f"CPU {missing[0]} does not exist on this host ({host})")
        raise CpusetError(f"CPUs {format_cpuset(missing)} do not exist on this host ({host})")
    wanted = set(ids)
    return tuple(cpu in wanted for cpu in range(width))


def cpumap_to_cpuset(cpumap: Sequence[bool]) -> frozenset[int]:
    """The set of CPU ids whose entry is true in a libvirt cpumap (e.g. from ``vcpuPinInfo``).

    An all-false map gives an empty set rather than an error: that is a state read back from
    libvirt, and the caller decides what it means.
    """
    return frozenset(cpu for cpu, pinned in enumerate(cpumap) if pinned)
