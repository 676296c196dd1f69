"""The ways one VM can be placed (:class:`Option`: its vCPUs and memory per cell) and what the
search knows about a VM before it starts (:class:`SearchVm`: its size, whether it fits an empty
cell, the option that is where it is now). None of this depends on where the other VMs are,
except a split in proportion to the free room, whose weights the search's state supplies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from balancing.planner.capacity import CapacityModel
from balancing.planner.model import GIB, Assignment, VmDemand
from balancing.planner.scoring import split_evenly


@dataclass(frozen=True)
class Option:
    """One way to place a VM: its vCPUs and memory per cell."""

    cells: frozenset[int]
    vcpus: dict[int, int]
    memory: dict[int, int]
    #: The VM's term of Score.remote before the division by the total memory (GiB-weighted).
    remote: float
    #: Split in proportion to free room rather than evenly.
    weighted: bool = False

    @property
    def nodeset(self) -> frozenset[int]:
        return frozenset(self.memory) or frozenset(self.vcpus) or self.cells


@dataclass
class SearchVm:
    """One VM as the search sees it: its demand, where it is now, and its options (cached)."""

    i: int
    demand: VmDemand
    now: Assignment
    name: str
    vcpus: int
    memory: int
    dedicated: bool
    size: tuple[float, float, str] = (0.0, 0.0, "")
    #: Fits no empty cell under the policy: it is always spread.
    larger_than_cells: bool = False
    #: The option that is where it is now, when that is a valid option.
    home: Option | None = None
    #: Placed on ``home``, its pins and emulator pin would stay exactly as they are.
    can_stay: bool = False
    #: Dedicated and staying: its current units per cell, in vCPU order.
    keep_units: dict[int, list[tuple[int, ...]]] | None = None
    singles: dict[int, Option | None] = field(default_factory=dict)
    #: Even splits over sets of cells (they do not depend on the state).
    spreads: dict[tuple[int, ...], Option | None] = field(default_factory=dict)


#: The weights of a split in proportion to the free room, given a VM, the cells of a set with
#: usable CPUs and those with memory: (per CPU cell, per memory cell); None when no room.
Weights = Callable[[SearchVm, list[int], list[int]], tuple[list[int], list[int]] | None]


def remote_of(model: CapacityModel, vcpus: Mapping[int, int], memory: Mapping[int, int]) -> float:
    if len(vcpus) <= 1 and len(memory) <= 1 and (not vcpus or vcpus.keys() == memory.keys()):
        return 0.0
    total = sum(vcpus.values()) or 1
    factor = model.factor
    out = 0.0
    for c, n in vcpus.items():
        share = n / total
        for mc, kib in memory.items():
            out += share * kib / GIB * factor[c, mc]
    return out


def option(
    model: CapacityModel, v: SearchVm, cells: Sequence[int], weights: Weights | None = None
) -> Option | None:
    """*v* over *cells*: split evenly, or in proportion to *weights* when given."""
    m = model
    cpu_part = [c for c in cells if m.usable[c]]
    mem_part = [c for c in cells if m.mem_cap[c] > 0]
    if (v.vcpus and not cpu_part) or (v.memory and not mem_part):
        return None
    wc: list[int] | None = None
    wm: list[int] | None = None
    if weights is not None:
        room = weights(v, cpu_part, mem_part)
        if room is None:
            return None
        wc, wm = room
    if v.dedicated and m.unit_size > 1 and len(cpu_part) > 1:
        # Whole cores per cell, so that vCPUs 2k and 2k+1 stay on one core.
        per = split_evenly(math.ceil(v.vcpus / m.unit_size), cpu_part, wc)
        vcpus: dict[int, int] = {}
        left = v.vcpus
        for c in cpu_part:
            x = min(per[c] * m.unit_size, left)
            if x:
                vcpus[c] = x
                left -= x
    else:
        vcpus = {c: x for c, x in split_evenly(v.vcpus, cpu_part, wc).items() if x}
    memory = {c: x for c, x in split_evenly(v.memory, mem_part, wm).items() if x}
    used = frozenset(vcpus) | frozenset(memory)
    if not used:
        used = frozenset(cpu_part[:1] or cells[:1])
    return Option(used, vcpus, memory, remote_of(m, vcpus, memory), weights is not None)


def even_option(model: CapacityModel, v: SearchVm, cells: tuple[int, ...]) -> Option | None:
    """*v* split evenly over *cells* (cached on *v*)."""
    if cells not in v.spreads:
        v.spreads[cells] = option(model, v, cells)
    return v.spreads[cells]


def single_option(model: CapacityModel, v: SearchVm, c: int) -> Option | None:
    """*v* on cell *c* alone (cached on *v*)."""
    if c not in v.singles:
        v.singles[c] = option(model, v, (c,))
    return v.singles[c]


# --- where a VM is now ----------------------------------------------------------------------------


def prepare(
    model: CapacityModel,
    v: SearchVm,
    spread_cells: Sequence[int],
    cur_pool: Mapping[int, frozenset[int]],
) -> None:
    """Fill in *v*'s size, whether it is larger than any cell, and its home option (and whether
    it can stay there, pins and all). *cur_pool*: the shared pool of each cell now."""
    m, now = model, v.now
    v.size = _size(m, v)
    v.larger_than_cells = not any(_fits_empty(m, v, c) for c in m.cpu_cells)
    if not now.cells <= set(spread_cells):
        return
    home = option(m, v, sorted(now.cells))
    if (
        home is None
        or home.cells != now.cells
        or home.vcpus != dict(now.vcpus_by_cell)
        or home.memory != dict(now.memory_kib_by_cell)
        or home.nodeset != now.nodeset
    ):
        return
    v.home = home
    if m.policy.emulator == "cell":
        emulator = frozenset().union(*(cur_pool[c] for c in home.vcpus))
    else:
        emulator = frozenset(m.policy.housekeeping)
    if now.emulatorpin != emulator:
        return
    order = [c for c in sorted(home.vcpus) for _ in range(home.vcpus[c])]
    if not v.dedicated:
        v.can_stay = all(now.vcpupin[i] == cur_pool[c] for i, c in enumerate(order))
        return
    # Dedicated: one CPU per vCPU, vCPUs in chunks of a core's threads on one unit each.
    size = m.unit_size
    pins = [now.vcpupin[i] for i in range(len(order))]
    if any(len(p) != 1 for p in pins):
        return
    cpus = [next(iter(p)) for p in pins]
    if len(set(cpus)) != len(cpus):
        return
    keep: dict[int, list[tuple[int, ...]]] = {}
    start = 0
    for c in sorted(home.vcpus):
        n = home.vcpus[c]
        units = []
        for j in range(start, start + n, size):
            chunk = {m.unit_of.get(cpu) for cpu in cpus[j : min(j + size, start + n)]}
            if len(chunk) != 1 or None in chunk:
                return
            (unit,) = chunk
            if m.cell_of.get(unit[0]) != c or unit in units:
                return
            units.append(unit)
        keep[c] = units
        start += n
    v.keep_units = keep
    v.can_stay = True


def _size(m: CapacityModel, v: SearchVm) -> tuple[float, float, str]:
    mem_cap = max((m.mem_cap[c] for c in m.cpu_cells), default=0) or 1
    if v.dedicated:
        cpu_cap = max((len(m.units[c]) * m.unit_size for c in m.cpu_cells), default=0) or 1
        cpu = math.ceil(v.vcpus / m.unit_size) * m.unit_size / cpu_cap
    else:
        cpu_cap = max((m.limit(len(m.usable[c])) for c in m.cpu_cells), default=0) or 1
        cpu = v.vcpus / cpu_cap
    mem = v.memory / mem_cap
    return (-max(cpu, mem), -(cpu + mem), v.name)


def _fits_empty(m: CapacityModel, v: SearchVm, c: int) -> bool:
    """Would *v* fit cell *c* with nothing else on it (the policy's capacity alone)?"""
    if v.memory > m.mem_cap[c]:
        return False
    if v.dedicated:
        sizes = sorted((len(u) for u in m.units[c]), reverse=True)
        got = taken = 0
        for s in sizes:
            if got >= v.vcpus:
                break
            got += s
            taken += s
        if got < v.vcpus:
            return False
        return not (m.policy.emulator == "cell" and v.vcpus and len(m.usable[c]) - taken < 1)
    return v.vcpus <= m.limit(len(m.usable[c]))
