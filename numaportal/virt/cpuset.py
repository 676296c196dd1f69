"""CPU and NUMA node sets in the syntax operators type: ``"18-23"``, ``"0,2,4-6"``, ``"0-7,^3"``.

This is the syntax of ``virsh vcpupin``/``emulatorpin``, of ``<vcpupin cpuset=...>`` and
``<numatune><memory nodeset=...>`` in domain XML and of ``siblings=`` in capabilities XML, read
as libvirt's own bitmap parser reads it (tests/libvirt/test_oracle_cpuset.py holds us to that,
with libvirt itself as the oracle). It reaches us from two untrusted directions (a browser form
and a hypervisor's XML), so parsing is strict and every failure is a :class:`CpusetError` that
names the offending part: the form shows that message next to the field.

libvirt's pin calls (``pinVcpuFlags``, ``pinEmulator``) take a *cpumap* instead: a tuple of
bools, one per host CPU. :func:`cpuset_to_cpumap` and :func:`cpumap_to_cpuset` convert, and the
former is where "that CPU does not exist on this host" is caught before a worker ever runs.
"""

from __future__ import annotations

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

#: Largest id we accept: libvirt 9.0 parses every domain cpuset and nodeset (``<vcpu cpuset>``,
#: ``<vcpupin>``, ``<emulatorpin>``, ``<numatune>``) into a bitmap of VIR_DOMAIN_CPUMASK_LEN =
#: 16384 bits and refuses any id that does not fit, so 16383 is the largest id a host can have
#: pinned. (tests/libvirt/test_oracle_cpuset.py checks both sides of that edge against libvirt.)
MAX_CPU_ID = 16383

# libvirt's virBitmapParse skips whitespace with GLib's g_ascii_isspace, which is these five:
# not "\v" (nor any non-ASCII space). The end of a range is read by strtol(), which also skips
# C-locale isspace() (with "\v") and takes a sign: "0-+3" and "0- \v3" mean 0-3, "0--0" is {0}.
_SPACE = " \t\n\f\r"
_STRTOL_SPACE = " \t\n\v\f\r"
# A number is plain ASCII decimal (g_ascii_isdigit); "\u00b2" or Arabic-Indic digits are not.
_DIGITS = "0123456789"
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
    # A "\v" or "\x00" the form cannot show is written as its escape, so the message says why.
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return f"'{shown}'"


def _skip(text: str, at: int, spaces: str = _SPACE) -> int:
    while at < len(text) and text[at] in spaces:
        at += 1
    return at


def _digits_end(text: str, at: int) -> int:
    while at < len(text) and text[at] in _DIGITS:
        at += 1
    return at


class _Element:
    """One comma-separated element of the text being parsed, for messages that name it."""

    def __init__(self, text: str, start: int, kind: str, id_word: str) -> None:
        end = text.find(",", start)
        self.token = text[start : len(text) if end < 0 else end].strip(_SPACE)
        self.text, self.kind, self.id_word = text, kind, id_word

    def error(self, reason: str) -> CpusetError:
        where = f"in {self.kind} {_quote(self.text)}"
        return CpusetError(f"invalid element {_quote(self.token)} {where}: {reason}")

    def number(self, digits: str) -> int:
        significant = digits.lstrip("0") or "0"
        if len(significant) > _MAX_DIGITS or int(significant) > MAX_CPU_ID:
            raise self.error(
                f"{self.id_word} id {_quote(digits)} is larger than the maximum {MAX_CPU_ID}"
            )
        return int(significant)

    def not_a_start(self, position: int) -> CpusetError:
        """Why the element does not begin with an id (or ``^`` and an id)."""
        token, id_word = self.token, self.id_word
        if not token:
            return CpusetError(
                f"empty element at position {position} in {self.kind} {_quote(self.text)} "
                "(stray comma?)"
            )
        body = token[1:] if token.startswith("^") else token
        if not body:
            return self.error(f"missing {id_word} id")
        if body[0] in _SPACE:
            return self.error(f"'^' must be followed directly by a {id_word} id")
        if body.startswith("-") and body[1:2].isascii() and body[1:2].isdigit():
            return self.error(f"negative {id_word} ids are not allowed")
        if body.startswith("-"):
            return self.error("missing start of range")
        return self.error(f"{_quote(body)} is not a decimal {id_word} id")


def _parse(text: object, kind: str, id_word: str) -> frozenset[int]:
    """libvirt 9.0's virBitmapParse, step for step, with errors that name the element."""
    if not isinstance(text, str):
        raise CpusetError(f"{kind} must be a string, not {type(text).__name__}")
    at = _skip(text, 0)
    if at == len(text):
        raise CpusetError(f"empty {kind}")

    ids: set[int] = set()
    included = False
    position = 1
    while at < len(text):
        element = _Element(text, at, kind, id_word)
        negated = text[at] == "^"
        if negated:
            at += 1
        end = _digits_end(text, at)
        if end == at:
            raise element.not_a_start(position)
        start = element.number(text[at:end])
        at = _skip(text, end)
        is_range = at < len(text) and text[at] == "-"
        if not is_range and negated:
            # Left to right, as libvirt reads it: "^3" clears 3 from what is set so far, and a
            # later element may set it again ("0-3,^1,1" is 0-3; "^3,0-7" is 0-7).
            ids.discard(start)
        elif not is_range:
            ids.add(start)
            included = True
        elif negated:
            raise element.error(
                f"a range cannot be excluded ('^N-M'); exclude one {id_word} per '^' ('^1,^2')"
            )
        else:
            last, at = _range_end(text, _skip(text, at + 1), element)
            if last < start:
                raise CpusetError(
                    f"invalid range {_quote(element.token)} in {kind} {_quote(text)}: "
                    "start is greater than end"
                )
            ids.update(range(start, last + 1))
            included = True
            at = _skip(text, at)
        if at == len(text):
            break
        if text[at] != ",":
            body = element.token.lstrip("^")
            if is_range and not negated:
                body = body.split("-", 1)[1].strip(_SPACE)
            raise element.error(f"{_quote(body)} is not a decimal {id_word} id")
        # libvirt ends the loop at the end of the text after a comma: "1," is {1}.
        at = _skip(text, at + 1)
        position += 1

    if not included:
        raise CpusetError(f"{kind} {_quote(text)} has only exclusions ('^N'); nothing is included")
    if not ids:
        raise CpusetError(f"{kind} {_quote(text)} excludes every {id_word} it includes")
    return frozenset(ids)


def _range_end(text: str, at: int, element: _Element) -> tuple[int, int]:
    """The end of ``N-M`` as libvirt reads it (with strtol) and the index after it."""
    digits_at = _skip(text, at, _STRTOL_SPACE)
    sign = text[digits_at] if digits_at < len(text) and text[digits_at] in "+-" else ""
    digits_at += len(sign)
    end = _digits_end(text, digits_at)
    if end == digits_at:
        rest = element.token.split("-", 1)[1].strip(_SPACE)
        if not rest:
            raise element.error("missing end of range")
        raise element.error(f"{_quote(rest)} is not a decimal {element.id_word} id")
    if sign == "-" and text[digits_at:end].strip("0"):
        raise element.error(f"negative {element.id_word} ids are not allowed")
    return element.number(text[digits_at:end]), end


def parse_cpuset(text: str) -> frozenset[int]:
    """Parse libvirt cpuset syntax (``"0-3,8,^2"``) into a non-empty set of CPU ids.

    Read exactly as libvirt 9.0's virBitmapParse reads it, so that what the portal shows is
    what libvirt does: elements ``N``, ``N-M`` and ``^N`` apply left to right (``"0-7,^3"`` is
    0-2,4-7 but ``"^3,0-7"`` is 0-7), ``^N-M`` is refused, ids go up to :data:`MAX_CPU_ID`,
    whitespace is allowed around elements and the dash but not after ``^``, and one trailing
    comma is allowed (``"1,"``). Anything else, including an empty result (which every libvirt
    element refuses), raises :class:`CpusetError`; no other exception escapes for ``str`` input.
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
