"""The search: two greedy starts, each improved locally; the better one by the score wins
(:func:`run`). The greedy places VMs largest first where they fit best; the local
improvement puts needlessly split VMs on one cell, moves split VMs onto better cells and
relocates VMs one at a time while the objective drops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from balancing.planner.choosing import best_single, best_spread, single_fits
from balancing.planner.model import Assignment, InfeasibleError, gib
from balancing.planner.options import SearchVm, even_option
from balancing.planner.pins import materialise
from balancing.planner.repair import make_room, repair
from balancing.planner.state import Journal, SearchState, better

#: Relocation passes of the local improvement (each tries every VM on every cell once).
_PASSES = 4
#: At most this many VMs are moved out of a cell to make room for one that is split.
_MAX_EJECT = 4


def run(state: SearchState) -> dict[str, Assignment]:
    """Two greedy starts, each improved locally; the better one by the score wins.

    "fresh": dedicated VMs first (whole cores are the scarcest), then every VM largest
    first, where it fits best (a move costs its weight); "stay": VMs well placed on one
    cell stay there first while the cell has room, the others fill in. "fresh" packs
    better (VMs placed after they are sorted by size); "stay" moves fewer VMs. Both first
    put the VMs larger than any cell on the fewest, closest cells, while the cells are
    emptiest. The start leaving fewer VMs needlessly split wins, then the lower score."""
    free = [v for v in state.vms if not v.demand.locked]
    order = sorted(free, key=lambda v: v.size)
    base = state.snapshot()
    best: tuple[tuple[int, float, float], dict[str, Any]] | None = None
    error: InfeasibleError | None = None
    for keep_first in (False, True):
        state.restore(base)
        try:
            _greedy(state, order, keep_first)
        except InfeasibleError as exc:
            error = error or exc
            continue
        _improve(state, order)
        # A VM that fits one cell goes on one cell: fewer needless splits win first.
        needless = sum(
            1 for v in order if len(state.where[v.i].opt.cells) > 1 and not v.larger_than_cells
        )
        total, tie = state.objective()
        value = (needless, total, tie)
        if (
            best is None
            or value[0] < best[0][0]
            or (value[0] == best[0][0] and better(value[1:], best[0][1:]))
        ):
            best = (value, state.snapshot())
    if best is None:
        assert error is not None
        raise error
    state.restore(best[1])
    return materialise(state)


# --- the greedy starts ----------------------------------------------------------------------------


def _greedy(state: SearchState, order: Sequence[SearchVm], keep_first: bool) -> None:
    # Dedicated VMs first (whole cores are the scarcest), then VMs larger than any cell.
    for v in order:
        if v.dedicated and (v.larger_than_cells or not keep_first):
            _place(state, v)
    for v in order:
        if v.larger_than_cells and v.i not in state.where:
            _place(state, v)
    if keep_first:
        for v in order:
            if v.i in state.where or v.home is None or len(v.home.cells) != 1:
                continue
            sizes = state.fits(v, v.home)
            if sizes is not None:
                state.add(v, v.home, sizes)
    for v in order:
        if v.i not in state.where:
            _place(state, v)


# --- local improvement ----------------------------------------------------------------------------


def _improve(state: SearchState, order: Sequence[SearchVm]) -> None:
    for v in order:
        needless = len(state.where[v.i].opt.cells) > 1 and not v.larger_than_cells
        if needless and not _consolidate(state, v):
            repair(state, v)
    for v in order:
        if len(state.where[v.i].opt.cells) > 1:
            _respread(state, v)
    for _ in range(_PASSES):
        if not _relocate_pass(state, order):
            break
    for v in order:
        if len(state.where[v.i].opt.cells) > 1 and not v.larger_than_cells:
            _consolidate(state, v)


def _place(state: SearchState, v: SearchVm) -> None:
    choice = best_single(state, v) or best_spread(state, v)
    if choice is not None:
        state.add(v, *choice)
        return
    # Fragmented: make room on one cell by moving smaller VMs elsewhere.
    for c in sorted(state.m.cpu_cells, key=lambda c: (state.mem[c] - state.m.mem_cap[c], c)):
        journal: Journal = []
        if make_room(state, v, c, journal, 2 * _MAX_EJECT):
            return
        state.rollback(journal)
    if not repair(state, v):
        raise InfeasibleError(_no_room(state, v))


def _no_room(state: SearchState, v: SearchVm) -> str:
    m = state.m
    parts = []
    for c in state.spread_cells:
        text = f"cell {c}: {gib(max(0, m.mem_cap[c] - state.mem[c]))} free"
        if m.usable[c]:
            if v.dedicated:
                cores = sum(state.free[c].values())
                text += f", {cores} free {'core' if state.policy.whole_cores else 'CPU'}(s)"
            else:
                slots = max(0, m.limit(state.pool[c]) - state.shared[c])
                text += f", room for {slots} shared vCPU(s)"
        parts.append(text)
    kind = "dedicated " if v.dedicated else ""
    return (
        f"cannot place {v.name} ({v.vcpus} {kind}vCPUs, {gib(v.memory)}): no cell or set "
        f"of cells has room left for it under the policy ({'; '.join(parts)})"
    )


def _consolidate(state: SearchState, v: SearchVm) -> bool:
    """A split VM that would fit one cell: onto one cell, making room if need be, when
    that lowers the score."""
    before = state.objective()
    m = state.m
    targets = sorted(m.cpu_cells, key=lambda c: (state.mem[c] - m.mem_cap[c], c))
    for c in targets:
        journal: Journal = []
        if make_room(state, v, c, journal, _MAX_EJECT) and better(state.objective(), before):
            return True
        state.rollback(journal)
    return False


def _respread(state: SearchState, v: SearchVm) -> bool:
    """A VM that must be split: onto a better set of cells (no more of them) if any."""
    before = state.objective()
    old = state.remove(v)
    best = None
    for k in range(2, len(old.opt.cells) + 1):
        # Uneven splits only for a VM that needed one (not to balance the cells).
        for weighted in (False, True) if old.opt.weighted else (False,):
            if weighted and best is not None:
                break
            for cells in state.cell_sets(k):
                opt = (
                    state.weighted_option(v, cells) if weighted else even_option(state.m, v, cells)
                )
                if opt is None or len(opt.cells) != k or opt == old.opt:
                    continue
                sizes = state.fits(v, opt)
                if sizes is None:
                    continue
                state.add(v, opt, sizes)
                value = state.objective()
                state.remove(v)
                if (best is None or better(value, best[0])) and better(value, before):
                    best = (value, opt, sizes)
        if best is not None:
            break
    if best is None:
        state.add(v, old.opt, old.sizes)
        return False
    state.add(v, best[1], best[2])
    return True


def _relocate_pass(state: SearchState, order: Sequence[SearchVm]) -> bool:
    improved = False
    for v in order:
        placed = state.where[v.i]
        if len(placed.opt.cells) != 1:
            continue
        (here,) = placed.opt.cells
        before = state.objective()
        state.remove(v)
        best = None
        for _c, opt, sizes in single_fits(state, v, exclude=here):
            state.add(v, opt, sizes)
            value = state.objective()
            state.remove(v)
            if best is None or better(value, best[0]):
                best = (value, opt, sizes)
        if best is not None and better(best[0], before):
            state.add(v, best[1], best[2])
            improved = True
        else:
            state.add(v, placed.opt, placed.sizes)
    return improved
