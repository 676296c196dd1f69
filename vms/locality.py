"""A VM's memory locality: how much of its own memory sits where its vCPUs run.

Pure functions (no Django, no I/O), shared by the sampler (which stores a locality with every
on-host sample), the pages and the tests. It lives in ``vms`` because it is about a VM and
every caller is in ``vms`` or above it (sampling, history, pages, the balancing trigger);
``numaportal`` is for what every layer needs, and nothing below ``vms`` needs this.

A VM's **home cells** are the cells its vCPUs may run on (``VirtualMachine.cells``). Memory on
a home cell counts fully. Memory on another cell ``c`` counts with the weight

    clamp((2 * L - d) / L, 0, 1)

where ``L`` is the home cell's own (local) distance, 10 when the host does not report a usable
one, and ``d`` its distance to ``c``; with several home cells the nearest one decides (the
largest weight). The locality is the weighted memory over all of it, from 0 (everything far
away) to 1 (everything home).

Why that line: the ACPI SLIT distances libvirt reports are relative latencies times ten, 10 =
local. 20 is twice the local latency, which on a two-socket machine is the other socket (the
NUMA lab's 21, and 30 for its memory-only node): memory that far away is remote, it counts 0,
so a VM with its vCPUs on one socket and its memory on the other is at 0, not halfway. A sibling
sub-NUMA cluster on the same socket (SNC, NPS) at 11 or 12 is almost local and counts 0.9 or
0.8; 16 counts 0.4. The weight falls linearly from 1 at the local distance to 0 at twice it.

What a host reports is hostile data: distances that are missing, zero, negative or not numbers
give the cell weight 0 (no claim that the memory is near), a distance below the local one does
not make a remote cell count more than a home one, and negative MiB count as none.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping

#: A cell's distance to itself in the ACPI SLIT (and in libvirt's capabilities).
LOCAL_DISTANCE = 10

#: cell -> cell -> distance, read from the host's cells (``Cell.distances``).
Distances = Mapping[int, Mapping[int, float]]


def parse_distances(
    rows: Iterable[tuple[int, Mapping[str, object]]],
) -> dict[int, dict[int, float]]:
    """``Cell.distances`` rows (cell id, {"<node id>": distance}) as a matrix keyed by cell ids.

    JSON keys are strings; keys that are not node ids and values that are not positive
    numbers (host data: anything is possible) are dropped, so they count as unknown.
    """
    matrix: dict[int, dict[int, float]] = {}
    for cell, row in rows:
        parsed: dict[int, float] = {}
        for key, value in (row or {}).items():
            try:
                node = int(key)
            except (TypeError, ValueError):
                continue
            if _usable(value):
                parsed[node] = float(value)  # type: ignore[arg-type]
        matrix[int(cell)] = parsed
    return matrix


def _usable(value: object) -> bool:
    # bool is an int in Python; a JSON true is no distance.
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _local(row: Mapping[int, float], cell: int) -> float:
    """*cell*'s own distance from its row, :data:`LOCAL_DISTANCE` when not usable."""
    own = row.get(cell)
    return float(own) if own is not None and _usable(own) else LOCAL_DISTANCE


def _distance_weight(local: float, distance: float) -> float:
    """``clamp((2 * local - distance) / local, 0, 1)``: 1 at the local distance (or nearer),
    0 at twice it or further."""
    return min(1.0, max(0.0, (2 * local - distance) / local))


def cell_weight(cell: int, home: Collection[int], distances: Distances) -> float:
    """How much memory on *cell* counts for a VM whose vCPUs run on *home*: 1 on a home cell,
    ``(2 * local - distance) / local`` of the nearest home cell elsewhere (0 from twice the
    local distance on), 0 when no distance is known."""
    if cell in home:
        return 1.0
    best = 0.0
    for h in home:
        row = distances.get(h) or {}
        far = row.get(cell)
        if far is None or not _usable(far):
            continue
        best = max(best, _distance_weight(_local(row, h), float(far)))
    return best


def nearest_distance(cell: int, home: Collection[int], distances: Distances) -> float | None:
    """The smallest usable distance from one of *home* to *cell*; None when none is known (what
    the page says next to a weight of 0: too far, or unknown)."""
    known = [
        float(far)
        for h in home
        if (far := (distances.get(h) or {}).get(cell)) is not None and _usable(far)
    ]
    return min(known, default=None)


def cell_weights(
    cells: Iterable[int], home: Collection[int], distances: Distances
) -> dict[int, float]:
    """:func:`cell_weight` of each of *cells*."""
    return {cell: cell_weight(cell, home, distances) for cell in cells}


def locality(
    memory_mib: Mapping[int, float], home: Collection[int], distances: Distances
) -> float | None:
    """The distance-weighted share (0..1) of a VM's own memory (MiB per cell) on its home cells.

    None when it means nothing: no memory at all, or the home cells are unknown (a VM whose
    vCPU cells were never read cannot be called remote, as :mod:`vms.memory` does not either).
    """
    if not home:
        return None
    total = weighted = 0.0
    for cell, mib in memory_mib.items():
        if not (isinstance(mib, int | float) and math.isfinite(mib)) or mib <= 0:
            continue
        total += mib
        weighted += mib * cell_weight(cell, home, distances)
    if total <= 0:
        return None
    # Float sums may land a hair outside [0, 1]; the ratio is one by construction.
    return min(1.0, max(0.0, weighted / total))


def remote_mib(memory_mib: Mapping[int, float], home: Collection[int]) -> float | None:
    """How much of a VM's own memory (MiB per cell) lies outside its home cells, unweighted:
    the "remote memory" an operator moves first. None when the home cells are unknown."""
    if not home:
        return None
    return sum(
        mib
        for cell, mib in memory_mib.items()
        if cell not in home and isinstance(mib, int | float) and math.isfinite(mib) and mib > 0
    )


__all__ = [
    "LOCAL_DISTANCE",
    "Distances",
    "cell_weight",
    "cell_weights",
    "locality",
    "nearest_distance",
    "parse_distances",
    "remote_mib",
]
