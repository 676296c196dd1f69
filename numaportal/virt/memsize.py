"""Memory sizes in libvirt XML (``<memory unit='GiB'>4</memory>``, ``<cell memory= unit=>``),
read as libvirt reads them: its units, its number syntax, its rounding up to KiB and its limits.
"""

from __future__ import annotations

import re

__all__ = ["memory_to_kib", "size_kib"]

# libvirt's scaled integers (virScaleInteger in src/util/virutil.c), the memory units of domain
# and capabilities XML: "b", "byte" or "bytes"; one of the letters k m g t p e alone or followed
# by "iB" is a power of 1024, followed by "B" a power of 1000. Case does not matter (ASCII only:
# libvirt lower-cases with c_tolower, so the Kelvin sign is no "k"); whitespace is not allowed;
# an absent or empty unit is the element's default, KiB.
_UNIT_LETTERS = "kmgtpe"
# libvirt refuses a size above LLONG_MAX bytes (virScaleInteger) and a KiB value from
# ceil(LLONG_MAX / 1024) up (virDomainParseMemory): larger sizes are errors, never wrapped.
_MAX_BYTES = 2**63 - 1
_MAX_KIB = -(-_MAX_BYTES // 1024) - 1


def _unit_bytes(unit: str) -> int:
    folded = unit.lower() if unit.isascii() else ""
    if folded in ("b", "byte", "bytes"):
        return 1
    letter, rest = folded[:1], folded[1:]
    if letter and letter in _UNIT_LETTERS and rest in ("", "ib", "b"):
        return (1000 if rest == "b" else 1024) ** (_UNIT_LETTERS.index(letter) + 1)
    raise ValueError(f"unknown memory unit {unit!r}")


def memory_to_kib(value: int, unit: str | None) -> int:
    """Convert a libvirt ``unit=`` quantity to KiB as libvirt does (default unit KiB).

    A partial KiB rounds *up* (libvirt's VIR_DIV_UP: 1 byte is 1 KiB, 1 MB is 977 KiB).
    Raises ``ValueError`` for a unit libvirt does not know or a size it refuses as too large;
    callers wrap it in their own error type.
    """
    factor = _unit_bytes(unit) if unit else 1024
    if value * factor > _MAX_BYTES:
        raise ValueError(f"memory size {value} {unit or 'KiB'} is too large for libvirt")
    kib = -(-value * factor // 1024)
    if kib > _MAX_KIB:
        raise ValueError(f"memory size {value} {unit or 'KiB'} is too large for libvirt")
    return kib


# libvirt reads a memory size with strtoull (virXPathULongLong): leading C-locale whitespace and
# a "+" are allowed; a "-" (no wrap-around) or anything after the digits, whitespace too, is not.
_SIZE = re.compile(r"[ \t\n\v\f\r]*\+?0*([0-9]+)", re.ASCII)
_MAX_SIZE = 2**64 - 1  # ULLONG_MAX: larger numbers are refused before units are looked at


def size_kib(raw: str | None, unit: str | None) -> int | None:
    """A size in KiB as libvirt's virDomainParseMemory reads text *raw* in *unit*.

    None when *raw* is absent or empty (libvirt: not given). Raises ``ValueError`` for text
    libvirt refuses, an unknown unit or a size too large for libvirt.
    """
    if raw is None or raw == "":
        return None
    match = _SIZE.fullmatch(raw)
    digits = match.group(1) if match else ""
    if not digits or len(digits) > 20 or int(digits) > _MAX_SIZE:
        raise ValueError(f"{raw!r} is not a size (a non-negative integer)")
    return memory_to_kib(int(digits), unit)
