"""The two greedy baselines of the planner benchmark: first-fit decreasing and a
numad-style greedy (``bench/placement.py``'s docstring describes both)."""

from __future__ import annotations

from collections.abc import Sequence

from balancing.planner import Assignment, VmDemand, distance
from bench.planner_bench.capacity import (
    MIB,
    Capacity,
    Choice,
    Load,
    locked_assignments,
    materialise,
)


def first_fit_decreasing(cap: Capacity, vms: Sequence[VmDemand]) -> dict[str, Assignment]:
    fixed = locked_assignments(cap, vms)
    load = Load(cap, fixed.values())
    sets = cap.candidate_sets(len(cap.topology.cells))
    choice: Choice = {}
    todo = sorted(
        (vm for vm in vms if not vm.locked), key=lambda v: (-v.vcpus, -v.memory_kib, v.name)
    )
    for vm in todo:
        for cells in sets:  # singles in id order first, then pairs, ... in id order
            vcpus, memory = cap.split(vm, cells)
            if load.fits(vm, vcpus, memory):
                break
        else:  # fits nowhere: everywhere (validate() will say it is over capacity)
            vcpus, memory = cap.split(vm, sets[-1])
        load.add(vm, vcpus, memory)
        choice[vm.name] = (vcpus, memory)
    return materialise(cap, vms, choice, fixed)


def numad_greedy(cap: Capacity, vms: Sequence[VmDemand]) -> dict[str, Assignment]:
    topology = cap.topology
    fixed = locked_assignments(cap, vms)
    load = Load(cap, fixed.values())
    choice: Choice = {}
    all_cells = sorted(set(cap.cpu_cells) | set(cap.mem_cells))

    def magnitude(c: int) -> int:
        # numad: CPUs_free x MBs_free (a CPU-less node has magnitude 0).
        return load.free_cpu(c) * max(0, load.mem_free.get(c, 0) // MIB)

    todo = sorted(
        (vm for vm in vms if not vm.locked), key=lambda v: (-v.memory_kib, -v.vcpus, v.name)
    )
    for vm in todo:
        best = None
        for c in sorted(cap.cpu_cells, key=lambda c: (-magnitude(c), c)):
            vcpus, memory = cap.split(vm, [c])
            if load.fits(vm, vcpus, memory):
                best = (vcpus, memory)
                break
        if best is None:  # numad's spread: next node by magnitude / distance to the last one
            chosen: list[int] = []
            while len(chosen) < len(all_cells):
                rest = [c for c in all_cells if c not in chosen]
                prev = chosen[-1] if chosen else None

                def key(c: int, prev: int | None = prev) -> tuple[float, int, int]:
                    d = distance(topology, prev, c) if prev is not None else 1
                    return (-magnitude(c) / d, -load.mem_free.get(c, 0), c)

                chosen.append(min(rest, key=key))
                if not set(chosen) & set(cap.cpu_cells):
                    continue
                vcpus, memory = cap.split(vm, chosen)
                if load.fits(vm, vcpus, memory):
                    best = (vcpus, memory)
                    break
            if best is None:
                best = cap.split(vm, all_cells)
        load.add(vm, *best)
        choice[vm.name] = best
    return materialise(cap, vms, choice, fixed)
