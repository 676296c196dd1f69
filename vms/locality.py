"""A VM's memory locality: how much of its own memory sits where its vCPUs run.

Pure functions (no Django, no I/O), shared by the sampler (which stores a locality with every
on-host sample), the pages and the tests. It lives in ``vms`` because it is about a VM and
every caller is in ``vms`` or above it (sampling, history, pages, the balancing trigger);
``numaportal`` is for what every layer needs, and nothing below ``vms`` needs this.

A VM's **home cells** are the cells its vCPUs may run on (``VirtualMachine.cells``). Memory on
a home cell counts fully. Memory on another cell ``c`` counts with the weight

    local distance / min over home cells h of distance(h, c)

so 10 / 21 ≈ 0.48 on the neighbouring socket and 10 / 30 ≈ 0.33 on the NUMA lab's memory-only
node: an access there costs about that much more than a local one (the ACPI SLIT distances
libvirt reports are relative latencies, 10 = local). The locality is the weighted memory over
all of it, from 0 (everything far away) to 1 (everything home).

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


def cell_weight(cell: int, home: Collection[int], distances: Distances) -> float:
    """How much memory on *cell* counts for a VM whose vCPUs run on *home*: 1 on a home cell,
    ``local / nearest distance`` elsewhere (at most 1), 0 when no distance is known."""
    if cell in home:
        return 1.0
    best = 0.0
    for h in home:
        row = distances.get(h) or {}
        far = row.get(cell)
        if far is None or not _usable(far):
            continue
        own = row.get(h)
        local = float(own) if own is not None and _usable(own) else LOCAL_DISTANCE
        best = max(best, min(1.0, local / float(far)))
    return best


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


__all__ = [
    "LOCAL_DISTANCE",
    "Distances",
    "cell_weight",
    "cell_weights",
    "locality",
    "parse_distances",
]
