"""The pins of a finished search (:func:`materialise`): dedicated vCPUs one per CPU on whole
cores of their own (kept where they are when possible), shared vCPUs on their cell's shared
pool, emulator threads on the pool of the VM's cells or on the housekeeping CPUs."""

from __future__ import annotations

from balancing.planner.model import Assignment
from balancing.planner.state import SearchState


def materialise(state: SearchState) -> dict[str, Assignment]:
    """Every VM's assignment, pins and all, where the search has put it (locked VMs as now)."""
    m, policy = state.m, state.policy
    taken = set(state.taken_base)
    busy = set(state.taken_base) | set(state.blocked_base)
    dedicated = [v for v in state.vms if v.dedicated and not v.demand.locked]
    dedicated.sort(key=lambda v: (not (v.can_stay and state.where[v.i].opt == v.home), v.name))
    ded_pins: dict[int, dict[int, frozenset[int]]] = {}
    for v in dedicated:
        placed = state.where[v.i]
        opt = placed.opt
        pins: dict[int, frozenset[int]] = {}
        at_home = v.keep_units is not None and opt == v.home
        start = 0
        for c in sorted(opt.vcpus):
            n = opt.vcpus[c]
            want = sorted(placed.sizes.get(c, ()), reverse=True)
            units = keep_units_used = None
            if at_home:
                keep = v.keep_units[c]
                if sorted((len(u) for u in keep), reverse=True) == want and not any(
                    busy.intersection(u) for u in keep
                ):
                    units = keep_units_used = keep
            if units is None:
                free = [u for u in m.units[c] if not busy.intersection(u)]
                units = []
                for s in want:
                    unit = next(u for u in free if len(u) == s and u not in units)
                    units.append(unit)
                units.sort()
            cpus = [cpu for unit in units for cpu in unit]
            for j in range(n):
                if units is keep_units_used:
                    # Staying on its cores: the vCPUs keep their very CPUs.
                    pins[start + j] = frozenset(v.now.vcpupin[start + j])
                else:
                    pins[start + j] = frozenset((cpus[j],))
            for unit in units:
                taken.update(unit)
                busy.update(unit)
            start += n
        ded_pins[v.i] = pins
    pools = {c: frozenset(m.usable[c] - taken) for c in m.cell_ids}
    housekeeping = frozenset(policy.housekeeping)
    out: dict[str, Assignment] = {}
    for v in state.vms:
        if v.demand.locked:
            out[v.name] = state.locked[v.name]
            continue
        opt = state.where[v.i].opt
        if v.dedicated:
            pins = ded_pins[v.i]
        else:
            pins = {}
            for c in sorted(opt.vcpus):
                pool = pools[c]
                for _ in range(opt.vcpus[c]):
                    pins[len(pins)] = pool
        if not state.emulator_in_cell:
            emulator = housekeeping
        else:
            emulator = frozenset().union(*(pools[c] for c in opt.vcpus))
            if not emulator:
                emulator = frozenset().union(*(pools[c] for c in opt.cells))
        now = v.now
        nodeset = opt.nodeset
        moved = not (
            opt.cells == now.cells
            and nodeset == now.nodeset
            and emulator == now.emulatorpin
            and pins == dict(now.vcpupin)
        )
        out[v.name] = Assignment(
            name=v.name,
            cells=opt.cells,
            vcpupin=pins,
            emulatorpin=emulator,
            nodeset=nodeset,
            mode="strict",
            vcpus_by_cell=dict(sorted(opt.vcpus.items())),
            memory_kib_by_cell=dict(sorted(opt.memory.items())),
            moved=moved,
            locked=False,
            dedicated=v.dedicated,
        )
    return out
