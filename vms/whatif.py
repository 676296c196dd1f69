"""What-if for a VM's memory locality: where its memory would be after a change, and the warning
when much of it would stay away from its vCPUs.

Pure functions (no Django, no I/O), like :mod:`vms.locality`, which turns the memory per cell
these return into the figure; the change forms' previews and the balancing plan page show both.
Memory is MiB per cell (a VM's own memory, as ``VmCellMemory.own_mib`` counts it); what a host
reported is hostile data, so amounts that are not positive finite numbers count as none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from numaportal.virt.cpuset import format_nodeset

__all__ = ["moved_to", "placed_on", "size_text", "stranded_text"]


def _mib(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return max(float(value), 0.0)


def moved_to(memory: Mapping[int, float], nodes: Iterable[int]) -> dict[int, float]:
    """*memory* after moving it live onto *nodes* (a restrictive numatune's new nodeset,
    page migration): what is on *nodes* already stays, the rest is spread evenly over them
    (the kernel decides the split; an even one is the guess). Unchanged when *nodes* is empty."""
    nodes = sorted(set(nodes))
    if not nodes:
        return {cell: _mib(mib) for cell, mib in memory.items()}
    away = sum(_mib(mib) for cell, mib in memory.items() if cell not in nodes)
    return {node: _mib(memory.get(node, 0.0)) + away / len(nodes) for node in nodes}


def placed_on(nodes: Iterable[int]) -> dict[int, float]:
    """Shares of memory per cell when a boot places all of it on *nodes* (bound there by
    numatune), evenly: only the shares matter for the locality, not the amount."""
    return dict.fromkeys(sorted(set(nodes)), 1.0)


def size_text(mib: float) -> str:
    """ "960 MiB", "4 GiB", "1.5 GiB"."""
    if mib < 1024:
        return f"{mib:.0f} MiB"
    return f"{mib / 1024:.1f}".removesuffix(".0") + " GiB"


def stranded_text(
    memory: Mapping[int, float], new_cells: Iterable[int], until: str = "until moved"
) -> str:
    """The warning when the vCPUs go to *new_cells* and much of *memory* (more than
    max(2 MiB, 5 %)) stays on other cells: "vCPUs to cell(s) 1; 100 % of its 4 GiB stays on
    cell(s) 0 until moved (remote memory)". "" when it would be local or nothing is known."""
    cells = frozenset(new_cells)
    own = {cell: _mib(mib) for cell, mib in memory.items()}
    total = sum(own.values())
    away = {cell: mib for cell, mib in own.items() if cell not in cells and mib > 0}
    stays = sum(away.values())
    if not cells or total <= 0 or stays <= max(2.0, 0.05 * total):
        return ""
    return (
        f"vCPUs to cell(s) {format_nodeset(cells)}; {100 * stays / total:.0f} % of its "
        f"{size_text(total)} stays on cell(s) {format_nodeset(away)} {until} (remote memory)"
    )
