"""Text the pages show for stored values: memory sizes and change parameters (pure Python).

Templates reach these through the filters of ``web/templatetags/portal.py`` (``|kib``,
``|params``, ``|cpuset``); services that write words (plan notes, CSV export) call them
directly, so a value reads the same everywhere.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["format_kib", "params_text"]


def format_kib(kib: int | None) -> str:
    """Memory the way `numactl -H` readers think of it: binary units, one decimal."""
    if kib is None:
        return "?"
    value = float(kib)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "KiB" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def params_text(params: Any) -> str:
    """A change's parameters as compact JSON, the way they were requested."""
    if not params:
        return ""
    return json.dumps(params, sort_keys=True, separators=(", ", ": "))
