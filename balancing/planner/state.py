"""The search's state: where each VM is placed (:class:`Placed`), what every cell has left
(memory, shared vCPU slots, free cores or CPUs), the running terms of the score, and the
operations that keep them in step (:meth:`SearchState.add` / :meth:`SearchState.remove`), the
objective the search lowers, snapshots and the undo of a journal of moves.

The strategies that move VMs live in :mod:`~balancing.planner.choosing`,
:mod:`~balancing.planner.repair` and :mod:`~balancing.planner.search`.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from balancing.planner.capacity import CapacityModel
from balancing.planner.current import HostMaps, current_on
from balancing.planner.model import GIB, Assignment, VmDemand
from balancing.planner.options import Option, SearchVm, option, prepare

#: Above this many cell sets of one size, sets are grown from each cell by distance instead.
_MAX_SETS = 2000
EPS = 1e-9


@dataclass
class Placed:
    """Where the search has put a VM."""

    opt: Option
    #: Dedicated VMs: sizes of the units taken per cell.
    sizes: dict[int, tuple[int, ...]]
    moved: bool
    changed: bool


#: Changes to undo: each VM moved, with where it was before (None: it was not placed).
Journal = list[tuple[SearchVm, Placed | None]]


def better(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Is objective *a* lower than *b* (beyond rounding noise)?"""
    return a[0] < b[0] - EPS or (abs(a[0] - b[0]) <= EPS and a[1] < b[1] - EPS)


class SearchState:
    """Where the search has put each VM of one host so far, under one capacity model."""

    def __init__(self, model: CapacityModel, vms: Sequence[VmDemand]) -> None:
        m = self.m = model
        self.policy = policy = model.policy
        self.spread = policy.strategy == "spread"
        self.emulator_in_cell = policy.emulator == "cell"
        self.oc = policy.cpu_overcommit
        self.usable_n = {c: len(model.usable[c]) for c in model.cell_ids}
        self.cpu_cap = {c: self.oc * n or 1.0 for c, n in self.usable_n.items()}
        n_all = max(1, len(vms))
        total_gib = sum(max(0, vm.memory_kib) for vm in vms) / GIB or 1.0
        self.r_coef = 100.0 / total_gib
        self.s_coef = 50.0 / n_all
        self.w_move = 100.0 * policy.move_weight / n_all
        self.notes: list[str] = []

        cells = m.cell_ids
        self.mem = dict.fromkeys(cells, 0)
        self.shared = dict.fromkeys(cells, 0)
        self.vcpus = dict.fromkeys(cells, 0)
        self.remote = 0.0
        self.split = 0
        self.moves = 0
        self.changed = 0
        self.where: dict[int, Placed] = {}
        self.single: dict[int, set[int]] = {c: set() for c in cells}
        self._sets: dict[int, list[tuple[int, ...]]] = {}

        self.vms: list[SearchVm] = []
        self.locked: dict[str, Assignment] = {}
        taken: set[int] = set()
        blocked: set[int] = set()
        owned_now: set[int] = set()
        host = HostMaps(model.topology)
        for i, vm in enumerate(vms):
            now = current_on(host, vm)
            v = SearchVm(
                i=i,
                demand=vm,
                now=now,
                name=vm.name,
                vcpus=max(0, vm.vcpus),
                memory=max(0, vm.memory_kib),
                dedicated=vm.dedicated,
            )
            self.vms.append(v)
            own = m.owned(now) if vm.dedicated else None
            if own:
                owned_now |= own
            if not vm.locked:
                continue
            self.locked[vm.name] = now
            for c, kib in now.memory_kib_by_cell.items():
                if c in self.mem:
                    self.mem[c] += kib
            for c, n in now.vcpus_by_cell.items():
                if c in self.vcpus:
                    self.vcpus[c] += n
                    if own is None:
                        self.shared[c] += n
            if own is not None:
                taken |= own
                blocked |= now.emulatorpin
            else:
                blocked |= now.emulatorpin
                for cpus in now.vcpupin.values():
                    blocked |= cpus
        self.taken_base = frozenset(taken)
        self.blocked_base = frozenset(blocked)
        busy = taken | blocked
        self.free = {
            c: Counter(len(u) for u in m.units[c] if not busy.intersection(u)) for c in cells
        }
        self.pool = {c: len(m.usable[c] - taken) for c in cells}
        self.spread_cells = [c for c in cells if m.usable[c] or m.mem_cap[c] > 0]
        self.cur_pool = {c: m.usable[c] - owned_now for c in cells}
        for v in self.vms:
            if not v.demand.locked:
                prepare(m, v, self.spread_cells, self.cur_pool)

    # -- options -----------------------------------------------------------------------------

    def weighted_option(self, v: SearchVm, cells: Sequence[int]) -> Option | None:
        """*v* over *cells* in proportion to the room they have left now."""
        return option(self.m, v, cells, self._free_room)

    def _free_room(
        self, v: SearchVm, cpu_part: list[int], mem_part: list[int]
    ) -> tuple[list[int], list[int]] | None:
        m = self.m
        wm = [max(0, m.mem_cap[c] - self.mem[c]) for c in mem_part]
        if v.dedicated:
            wc = [sum(s * k for s, k in self.free[c].items()) for c in cpu_part]
        else:
            wc = [max(0, m.limit(self.pool[c]) - self.shared[c]) for c in cpu_part]
        if (v.memory and not sum(wm)) or (v.vcpus and not sum(wc)):
            return None
        return wc, wm

    def cell_sets(self, k: int) -> list[tuple[int, ...]]:
        """Every set of *k* cells with a usable CPU (grown by distance on very large hosts)."""
        if k in self._sets:
            return self._sets[k]
        cand = self.spread_cells
        usable = self.m.usable
        if math.comb(len(cand), k) <= _MAX_SETS:
            sets = [s for s in itertools.combinations(cand, k) if any(usable[c] for c in s)]
        else:
            factor = self.m.factor
            found = set()
            for seed in self.m.cpu_cells:
                chosen = [seed]
                while len(chosen) < k:
                    rest = [c for c in cand if c not in chosen]
                    chosen.append(min(rest, key=lambda c: (sum(factor[s, c] for s in chosen), c)))
                found.add(tuple(sorted(chosen)))
            sets = sorted(found)
        self._sets[k] = sets
        return sets

    # -- bookkeeping -------------------------------------------------------------------------

    def take(self, c: int, n: int) -> tuple[int, ...] | None:
        free = self.free[c]
        if len(free) == 1:
            ((s, k),) = free.items()
            need = -(-n // s)
            return (s,) * need if need <= k else None
        out: list[int] = []
        got = 0
        for s in sorted(free, reverse=True):
            k = free[s]
            while k and got < n:
                out.append(s)
                got += s
                k -= 1
        return tuple(out) if got >= n else None

    def fits(self, v: SearchVm, opt: Option) -> dict[int, tuple[int, ...]] | None:
        m = self.m
        for c, kib in opt.memory.items():
            if self.mem[c] + kib > m.mem_cap[c]:
                return None
        sizes: dict[int, tuple[int, ...]] = {}
        for c, n in opt.vcpus.items():
            if not v.dedicated:
                if self.shared[c] + n > m.limit(self.pool[c]):
                    return None
                continue
            take = self.take(c, n)
            if take is None:
                return None
            after = self.pool[c] - sum(take)
            if self.shared[c] > m.limit(after) or (self.emulator_in_cell and after < 1):
                return None
            sizes[c] = take
        return sizes

    def estimate(self, v: SearchVm, opt: Option) -> tuple[bool, bool]:
        """(moved, cells changed), as far as can be told before the pins are chosen."""
        at_home = v.home is not None and opt == v.home
        changed = opt.cells != v.now.cells or opt.nodeset != v.now.nodeset
        return not (at_home and v.can_stay), changed

    def add(self, v: SearchVm, opt: Option, sizes: dict[int, tuple[int, ...]]) -> None:
        for c, kib in opt.memory.items():
            self.mem[c] += kib
        for c, n in opt.vcpus.items():
            self.vcpus[c] += n
            if not v.dedicated:
                self.shared[c] += n
        for c, take in sizes.items():
            free = self.free[c]
            for s in take:
                free[s] -= 1
            self.pool[c] -= sum(take)
        self.remote += opt.remote
        if len(opt.cells) > 1:
            self.split += 1
        else:
            self.single[next(iter(opt.cells))].add(v.i)
        moved, changed = self.estimate(v, opt)
        self.moves += moved
        self.changed += changed
        self.where[v.i] = Placed(opt, sizes, moved, changed)

    def remove(self, v: SearchVm) -> Placed:
        placed = self.where.pop(v.i)
        opt = placed.opt
        for c, kib in opt.memory.items():
            self.mem[c] -= kib
        for c, n in opt.vcpus.items():
            self.vcpus[c] -= n
            if not v.dedicated:
                self.shared[c] -= n
        for c, take in placed.sizes.items():
            free = self.free[c]
            for s in take:
                free[s] += 1
            self.pool[c] += sum(take)
        self.remote -= opt.remote
        if len(opt.cells) > 1:
            self.split -= 1
        else:
            self.single[next(iter(opt.cells))].discard(v.i)
        self.moves -= placed.moved
        self.changed -= placed.changed
        return placed

    def objective(self) -> tuple[float, float]:
        """The score's total (moves estimated, a fifth of a move per VM changing cells) and a
        smooth tie-break: the sum of squared utilisations (lower for spread, higher for pack)."""
        cpu = [self.vcpus[c] / n for c, n in self.m.score_cpu]
        mem = [self.mem[c] / k for c, k in self.m.score_mem]
        total = (
            self.r_coef * self.remote
            + self.s_coef * self.split
            + self.w_move * (self.moves + 0.2 * self.changed)
        )
        squares = self.squares()
        if not self.spread:
            return total, -squares
        imbalance = 0.0
        if len(cpu) > 1:
            peak = max(cpu)
            imbalance += (peak - min(cpu)) / (peak if peak > 1 else 1.0)
        if len(mem) > 1:
            imbalance += max(mem) - min(mem)
        return total + 12.5 * imbalance, squares

    def used_cpu(self, c: int) -> float:
        """Shared vCPUs plus dedicated CPUs (in vCPU slots) of cell *c*."""
        return self.shared[c] + self.oc * (self.usable_n[c] - self.pool[c])

    def squares(self) -> float:
        out = 0.0
        for c in self.m.cpu_cells:
            u = self.used_cpu(c) / self.cpu_cap[c]
            out += u * u
        for c in self.m.mem_cells:
            u = self.mem[c] / self.m.mem_cap[c]
            out += u * u
        return out

    def cost(self, v: SearchVm, opt: Option, sizes: Mapping[int, tuple[int, ...]]) -> float:
        """Greedy cost of an option: the move penalty plus the growth of the squared
        utilisations of CPU and memory (spread: prefer the least used cells, which also keeps
        both resources in step; pack: the fullest that fit)."""
        moved, changed = self.estimate(v, opt)
        cost = self.w_move * (moved + 0.2 * changed)
        m = self.m
        grow = 0.0
        for c, n in opt.vcpus.items():
            cap = self.cpu_cap[c]
            add = self.oc * sum(sizes[c]) if v.dedicated else n
            u, f = self.used_cpu(c) / cap, add / cap
            grow += 2 * u * f + f * f
        for c, kib in opt.memory.items():
            cap = m.mem_cap[c]
            u, f = self.mem[c] / cap, kib / cap
            grow += 2 * u * f + f * f
        return cost + (12.5 * grow if self.spread else -12.5 * grow)

    # -- snapshots and undo ------------------------------------------------------------------

    _STATE = ("mem", "shared", "vcpus", "free", "pool", "remote", "split", "moves", "changed")

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {}
        for name in self._STATE:
            value = getattr(self, name)
            if name == "free":
                value = {c: Counter(k) for c, k in value.items()}
            elif isinstance(value, dict):
                value = dict(value)
            snap[name] = value
        snap["where"] = dict(self.where)
        snap["single"] = {c: set(s) for c, s in self.single.items()}
        return snap

    def restore(self, snap: Mapping[str, Any]) -> None:
        for name in (*self._STATE, "where", "single"):
            value = snap[name]
            if name == "free":
                value = {c: Counter(k) for c, k in value.items()}
            elif name == "single":
                value = {c: set(s) for c, s in value.items()}
            elif isinstance(value, dict):
                value = dict(value)
            setattr(self, name, value)

    def rollback(self, journal: Journal) -> None:
        for v, old in reversed(journal):
            if v.i in self.where:
                self.remove(v)
            if old is not None:
                self.add(v, old.opt, old.sizes)
