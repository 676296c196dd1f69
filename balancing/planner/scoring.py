"""How good a set of assignments is (:func:`score`, its terms explained on
:class:`~balancing.planner.model.Score`), with what it rests on: node distances
(:func:`distance`) and how a VM's vCPUs and memory split over several cells (:func:`split_evenly`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from balancing.planner.model import Assignment, Score
from numaportal.virt.topology import HostTopology

LOCAL_DISTANCE = 10


def distance(topology: HostTopology, a: int, b: int) -> int:
    """Node distance; 10 for a cell to itself, 20 (libvirt's default remote) when unknown."""
    if a == b:
        return LOCAL_DISTANCE
    return topology.cell(a).distances.get(b, 2 * LOCAL_DISTANCE)


def split_evenly(
    total: int, cells: Sequence[int], weights: Sequence[int] | None = None
) -> dict[int, int]:
    """*total* split over *cells* in proportion to *weights* (equal by default), as integers that
    add up to *total* (largest remainders first)."""
    if not cells:
        return {}
    weights = list(weights) if weights is not None else [1] * len(cells)
    wsum = sum(weights) or len(cells)
    exact = [total * w / wsum for w in weights]
    parts = [math.floor(x) for x in exact]
    order = sorted(range(len(cells)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return dict(zip(cells, parts, strict=True))


def score(
    topology: HostTopology,
    assignments: Iterable[Assignment],
    *,
    move_weight: float = 0.1,
) -> Score:
    """Score a placement (a plan's assignments, or the current state as assignments)."""
    items = list(assignments)
    total_mem_gib = sum(sum(a.memory_kib_by_cell.values()) for a in items) / 2**20 or 1.0
    remote = remote_vcpus = 0.0
    one_cell = moves = 0
    cpu_load: dict[int, float] = {}
    mem_load: dict[int, float] = {}
    for a in items:
        vcpus = sum(a.vcpus_by_cell.values()) or 1
        mem = a.memory_kib_by_cell
        mem_total = sum(mem.values()) or 1
        if len(a.cells) <= 1:
            one_cell += 1
        moves += a.moved
        for c, n in a.vcpus_by_cell.items():
            share = n / vcpus
            local_fraction = mem.get(c, 0) / mem_total
            remote_vcpus += n * (1 - local_fraction)
            for m, kib in mem.items():
                remote += share * kib / 2**20 * (distance(topology, c, m) / LOCAL_DISTANCE - 1)
            cpu_load[c] = cpu_load.get(c, 0) + n
        for m, kib in mem.items():
            mem_load[m] = mem_load.get(m, 0) + kib
    cpu_fracs = [cpu_load.get(cell.id, 0) / len(cell.cpus) for cell in topology.cells if cell.cpus]
    peak = max(cpu_fracs, default=0.0)
    if peak > 1:
        cpu_fracs = [f / peak for f in cpu_fracs]
    mem_fracs = [
        mem_load.get(cell.id, 0) / cell.memory_kib for cell in topology.cells if cell.memory_kib
    ]
    cpu_imb = (max(cpu_fracs) - min(cpu_fracs)) if len(cpu_fracs) > 1 else 0.0
    mem_imb = (max(mem_fracs) - min(mem_fracs)) if len(mem_fracs) > 1 else 0.0
    n = len(items) or 1
    remote_norm = remote / total_mem_gib
    split = (len(items) - one_cell) / n
    total = 100 * (
        remote_norm + 0.5 * split + 0.25 * (cpu_imb + mem_imb) / 2 + move_weight * moves / n
    )
    return Score(
        vms=len(items),
        vms_on_one_cell=one_cell,
        remote=remote_norm,
        remote_vcpus=remote_vcpus,
        split=split,
        cpu_imbalance=cpu_imb,
        memory_imbalance=mem_imb,
        moves=moves,
        total=total,
    )
