"""Strings into markup: escaping, attribute lists, safe links, short text pieces.

The diagram is included in pages with ``|safe``, so every string that reaches its output goes
through :func:`esc` (or :func:`attrs`, which escapes), and links through :func:`safe_href`.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

# XML 1.0 forbids most C0 controls and lone surrogates; a VM name holding one would make the
# fragment unparsable (and browsers mangle them). Replace rather than drop so the name still
# shows that something odd is there.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def esc(value: object) -> str:
    """Escape for both element text and double-quoted attribute values."""
    return html.escape(_FORBIDDEN.sub("\ufffd", str(value)), quote=True)


def attrs(**pairs: object) -> str:
    """`` k="v"`` pairs; underscores become dashes (data_cpu -> data-cpu); None is skipped."""
    parts = []
    for key, value in pairs.items():
        if value is None:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(f' {name}="{esc(value)}"')
    return "".join(parts)


def safe_href(url: str) -> str | None:
    """The URL if it is relative or http(s); None for ``javascript:``, ``data:`` and the like."""
    # Browsers drop tabs/newlines inside a scheme ("java\tscript:"): refuse any control or
    # space character rather than guess how a browser will read it.
    if not isinstance(url, str) or not url or _FORBIDDEN.search(url):
        return None
    if any(ord(ch) <= 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in url):
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("", "http", "https") else None


def clip(text: str, width: int) -> str:
    """*text* cut to *width* characters, the last one an ellipsis when cut."""
    return text if len(text) <= width else text[: max(width - 1, 1)] + "\u2026"


def size_text(kib: int) -> str:
    """KiB as GiB (one decimal), MiB or KiB, for the memory bar and summaries."""
    if kib >= 1024 * 1024:
        return f"{kib / (1024 * 1024):.1f} GiB"
    if kib >= 1024:
        return f"{kib / 1024:.0f} MiB"
    return f"{kib} KiB"


def plural(count: int, word: str) -> str:
    """``1 thread``, ``2 threads``."""
    return f"{count} {word}{'' if count == 1 else 's'}"
