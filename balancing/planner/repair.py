"""Making room for a VM that fits nowhere as things are: moving smaller VMs off one cell
(:func:`make_room`), or putting it on a cell that cannot hold it and moving and swapping the
others until every cell is within capacity again (:func:`repair`). Every change goes to a
journal, so that a failed attempt can be undone.
"""

from __future__ import annotations

from balancing.planner.choosing import best_single
from balancing.planner.model import MIB
from balancing.planner.options import Option, SearchVm, single_option
from balancing.planner.state import EPS, Journal, SearchState

#: Repair of a split VM: cells tried, move/swap steps, VMs per cell considered for swaps.
_REPAIR_TARGETS = 3
_REPAIR_STEPS = 16
_SWAP_WIDTH = 12


def _deficit(state: SearchState, v: SearchVm, opt: Option, c: int) -> tuple[int, int, bool]:
    """What cell *c* lacks for *opt*: (memory KiB, shared vCPU slots, dedicated units)."""
    m = state.m
    mem = state.mem[c] + opt.memory.get(c, 0) - m.mem_cap[c]
    n = opt.vcpus.get(c, 0)
    if not v.dedicated:
        return max(0, mem), max(0, state.shared[c] + n - m.limit(state.pool[c])), False
    take = state.take(c, n) if n else ()
    if take is None:
        return max(0, mem), 0, True
    after = state.pool[c] - sum(take)
    units = state.emulator_in_cell and n > 0 and after < 1
    return max(0, mem), max(0, state.shared[c] - m.limit(after)), units


def make_room(state: SearchState, v: SearchVm, c: int, journal: Journal, max_eject: int) -> bool:
    """Place *v* alone on cell *c*, moving up to *max_eject* single-cell VMs of *c* to
    other cells if needed. Every change goes to *journal* (for
    :meth:`~balancing.planner.state.SearchState.rollback`)."""
    opt = single_option(state.m, v, c)
    if opt is None:
        return False
    if v.i in state.where:
        journal.append((v, state.remove(v)))
    else:
        journal.append((v, None))
    sizes = state.fits(v, opt)
    if sizes is None:
        mem, slots, units = _deficit(state, v, opt, c)

        def helps(u: SearchVm) -> bool:
            return bool(
                (mem and u.memory)
                or (slots and not u.dedicated and u.vcpus)
                or (units and u.dedicated)
            )

        def covers(u: SearchVm) -> bool:
            return (
                u.memory >= mem
                and (not slots or (not u.dedicated and u.vcpus >= slots))
                and (not units or u.dedicated)
            )

        others = [state.vms[i] for i in sorted(state.single[c]) if i != v.i]
        others = [u for u in others if u.size >= v.size]  # not larger than v
        # First one VM that frees enough alone (already moving ones, then the smallest);
        # else the largest first.
        alone = sorted(
            (u for u in others if covers(u)),
            key=lambda u: (not state.where[u.i].moved, -u.size[0], -u.size[1], u.name),
        )
        rest = sorted((u for u in others if not covers(u)), key=lambda u: u.size)
        ejected = 0
        for u in [*alone, *rest]:
            if ejected >= max_eject:
                break
            mem, slots, units = _deficit(state, v, opt, c)
            if not (mem or slots or units):
                break
            if u.i not in state.where or not helps(u):
                continue
            old = state.remove(u)
            moved = best_single(state, u, exclude=c)
            if moved is None:
                state.add(u, old.opt, old.sizes)
                continue
            journal.append((u, old))
            state.add(u, *moved)
            ejected += 1
        sizes = state.fits(v, opt)
        if sizes is None:
            return False
    state.add(v, opt, sizes)
    return True


def _over(state: SearchState, c: int, mem: int, shared: int) -> float:
    """How far cell *c* would be over capacity with *mem* KiB and *shared* vCPUs (as
    fractions of its memory and of its shared pool's commit); 0 when within."""
    m = state.m
    out = 0.0
    cap = m.mem_cap[c]
    if mem > cap:
        out += (mem - cap) / max(cap, MIB)
    limit = m.limit(state.pool[c])
    if shared > limit:
        out += (shared - limit) / max(m.limit(state.usable_n[c]), 1)
    return out


def _relieve(state: SearchState, keep: SearchVm, journal: Journal) -> bool:
    """Move and swap shared single-cell VMs (not *keep*, each at most once) between cells
    until no cell is over capacity; False when no step helps any more.

    Each step takes the best of: a move that over-fills no other cell, else such a swap,
    else any move or swap that lowers the total excess."""
    m = state.m
    cells = m.cpu_cells
    touched = {keep.i}

    def movable(c: int) -> list[SearchVm]:
        return [
            state.vms[i]
            for i in sorted(state.single[c])
            if i not in touched and not state.vms[i].dedicated
        ]

    for _ in range(_REPAIR_STEPS):
        excess = {c: _over(state, c, state.mem[c], state.shared[c]) for c in cells}
        over = [c for c in cells if excess[c] > 0]
        if not over:
            return True
        clean: tuple | None = None
        dirty: tuple | None = None
        for a in over:
            for u in movable(a):
                for b in cells:
                    if b == a or single_option(m, u, b) is None:
                        continue
                    after_b = _over(state, b, state.mem[b] + u.memory, state.shared[b] + u.vcpus)
                    delta = (
                        _over(state, a, state.mem[a] - u.memory, state.shared[a] - u.vcpus)
                        + after_b
                        - excess[a]
                        - excess[b]
                    )
                    if delta >= -EPS:
                        continue
                    key = (delta, u.name, u, None, a, b)
                    if after_b <= excess[b]:
                        if clean is None or key[:2] < clean[:2]:
                            clean = key
                    elif dirty is None or key[:2] < dirty[:2]:
                        dirty = key
        if clean is None:
            for a in over:
                us = movable(a)
                us = (
                    sorted(us, key=lambda u: (-u.memory, u.name))[:_SWAP_WIDTH]
                    + sorted(us, key=lambda u: (-u.vcpus, u.name))[:_SWAP_WIDTH]
                )
                for b in cells:
                    if b == a:
                        continue
                    ws = [w for w in movable(b) if single_option(m, w, a) is not None]
                    for u in {u.i: u for u in us}.values():
                        if single_option(m, u, b) is None:
                            continue
                        for w in ws:
                            dm, dn = w.memory - u.memory, w.vcpus - u.vcpus
                            after_b = _over(state, b, state.mem[b] - dm, state.shared[b] - dn)
                            delta = (
                                _over(state, a, state.mem[a] + dm, state.shared[a] + dn)
                                + after_b
                                - excess[a]
                                - excess[b]
                            )
                            if delta >= -EPS:
                                continue
                            key = (delta, f"{u.name} {w.name}", u, w, a, b)
                            if after_b <= excess[b]:
                                if clean is None or key[:2] < clean[:2]:
                                    clean = key
                            elif dirty is None or key[:2] < dirty[:2]:
                                dirty = key
        step = clean or dirty
        if step is None:
            return False
        _, _, u, w, a, b = step
        for vm, to in ((u, b), (w, a)):
            if vm is None:
                continue
            touched.add(vm.i)
            journal.append((vm, state.remove(vm)))
            state.add(vm, single_option(m, vm, to), {})
    return not any(_over(state, c, state.mem[c], state.shared[c]) > 0 for c in cells)


def repair(state: SearchState, v: SearchVm) -> bool:
    """Put *v* on one cell although it does not fit there, then move and swap other VMs
    until every cell is within capacity again (two resources fill unevenly: one cell out
    of memory, another out of CPU). Kept when it works, undone otherwise."""
    m = state.m
    old = state.remove(v) if v.i in state.where else None
    targets = []
    for c in m.cpu_cells:
        opt = single_option(m, v, c)
        if opt is None:
            continue
        sizes: dict[int, tuple[int, ...]] = {}
        if v.dedicated and v.vcpus:
            take = state.take(c, v.vcpus)
            if take is None or (state.emulator_in_cell and state.pool[c] - sum(take) < 1):
                continue
            sizes = {c: take}
        state.add(v, opt, sizes)
        over = sum(_over(state, x, state.mem[x], state.shared[x]) for x in m.cpu_cells)
        state.remove(v)
        targets.append((over, c, opt, sizes))
    targets.sort(key=lambda t: t[:2])
    for _, _, opt, sizes in targets[:_REPAIR_TARGETS]:
        journal: Journal = [(v, old)]
        state.add(v, opt, sizes)
        if _relieve(state, v, journal):
            return True
        state.rollback(journal)
        if v.i in state.where:  # rollback put it back where it was
            state.remove(v)
    if old is not None:
        state.add(v, old.opt, old.sizes)
    return False
