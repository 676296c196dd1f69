"""Telling the operator why: :func:`check_feasible` refuses, with numbers, requests no plan
can meet; :func:`explain` notes the decisions worth telling (a VM spread because no cell has room
for it, a cell already over its memory with locked VMs alone...)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from balancing.planner.model import Assignment, InfeasibleError, cpus_text, gib
from balancing.planner.options import SearchVm
from balancing.planner.state import SearchState


def check_feasible(state: SearchState) -> None:
    """Raise :class:`InfeasibleError` for requests no placement can meet, with numbers."""
    m, policy = state.m, state.policy
    free = [v for v in state.vms if not v.demand.locked]
    if not free:
        return
    if not m.cell_ids:
        raise InfeasibleError("the host reports no NUMA cells: there is nothing to place on")
    needs_cpu = [v for v in free if v.vcpus]
    if needs_cpu and not m.cpu_cells:
        host = cpus_text(m.host_cpus) or "none"
        raise InfeasibleError(
            f"no usable CPU on this host: its CPUs ({host}) are all reserved "
            f"(reserved: {cpus_text(policy.reserved) or 'none'}"
            + (
                f", housekeeping: {cpus_text(policy.housekeeping)}"
                if policy.emulator == "housekeeping"
                else ""
            )
            + f"), and {len(needs_cpu)} VM(s) need CPUs ({_names(needs_cpu)})"
        )
    if not state.emulator_in_cell:
        clash = policy.housekeeping & state.taken_base
        if clash:
            holders = sorted(
                name
                for name, a in state.locked.items()
                if a.dedicated and clash & set().union(*a.vcpupin.values())
            )
            raise InfeasibleError(
                f"emulator threads go to housekeeping CPU(s) "
                f"{cpus_text(policy.housekeeping)}, but {cpus_text(clash)} "
                f"{'is' if len(clash) == 1 else 'are'} dedicated to locked VM(s) "
                f"{', '.join(holders) or '(their siblings)'}"
            )
    dedicated = [v for v in free if v.dedicated and v.vcpus]
    if dedicated:
        word = "whole cores" if policy.whole_cores else "CPUs"
        size = m.unit_size
        need = sum(math.ceil(v.vcpus / size) for v in dedicated)
        have = sum(sum(state.free[c].values()) for c in m.cell_ids)
        if state.emulator_in_cell:
            # Each cell keeps at least one shared CPU for the emulator threads.
            have = sum(
                min(sum(state.free[c].values()), max(0, (state.pool[c] - 1) // size))
                for c in m.cell_ids
            )
        if need > have:
            total = sum(len(m.units[c]) for c in m.cell_ids)
            busy = state.taken_base | state.blocked_base
            blockers = sorted(
                name
                for name, a in state.locked.items()
                if any(
                    busy.intersection(u) and set(u) & (a.emulatorpin.union(*a.vcpupin.values()))
                    for c in m.cell_ids
                    for u in m.units[c]
                )
            )
            detail = ", ".join(
                f"{v.name}: {v.vcpus} vCPUs = {math.ceil(v.vcpus / size)}"
                for v in sorted(dedicated, key=lambda v: v.name)[:8]
            )
            more = f" and {len(dedicated) - 8} more" if len(dedicated) > 8 else ""
            why = [f"the host has {total} usable {word}"]
            if blockers:
                why.append(
                    "locked VMs hold or float over some of them: "
                    + ", ".join(blockers[:6])
                    + (f" and {len(blockers) - 6} more" if len(blockers) > 6 else "")
                )
            if state.emulator_in_cell:
                why.append("each cell keeps a CPU for emulator threads")
            raise InfeasibleError(
                f"the dedicated VMs need {need} {word} ({detail}{more}), but only {have} "
                f"can be dedicated ({'; '.join(why)})"
            )
    want_mem = sum(v.memory for v in free)
    have_mem = sum(max(0, m.mem_cap[c] - state.mem[c]) for c in m.cell_ids)
    if want_mem > have_mem:
        locked_mem = sum(state.mem.values())
        raise InfeasibleError(
            f"the VMs to place need {gib(want_mem)} of memory, the cells offer "
            f"{gib(have_mem)} ({gib(m.topology.total_memory_kib)} in all, minus "
            f"{gib(policy.memory_reserve_kib)} reserved per cell"
            + (f", minus {gib(locked_mem)} of locked VMs" if locked_mem else "")
            + ")"
        )
    shared = [v for v in free if not v.dedicated and v.vcpus]
    if shared:
        ded_cpus = sum(math.ceil(v.vcpus / m.unit_size) * m.unit_size for v in dedicated)
        pool = sum(state.pool[c] for c in m.cell_ids) - ded_cpus
        room = m.limit(pool) - sum(state.shared.values())
        want = sum(v.vcpus for v in shared)
        if want > room:
            raise InfeasibleError(
                f"the shared VMs have {want} vCPUs, the shared pools allow {max(0, room)} "
                f"({max(0, pool)} CPUs left after reserved and dedicated ones, over-commit "
                f"{policy.cpu_overcommit:g}"
                + (", minus the vCPUs of locked VMs" if any(state.shared.values()) else "")
                + ")"
            )


def _names(vms: Sequence[SearchVm], limit: int = 6) -> str:
    names = sorted(v.name for v in vms)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def explain(state: SearchState, assignments: Mapping[str, Assignment]) -> list[str]:
    m, notes = state.m, list(state.notes)
    unknown = state.policy.reserved - m.host_cpus
    if unknown:
        notes.append(f"reserved CPU(s) {cpus_text(unknown)} are not on this host (ignored)")
    for v in sorted(state.vms, key=lambda v: v.name):
        if v.demand.locked:
            continue
        placed = state.where[v.i]
        cells = placed.opt.cells
        if len(cells) < 2:
            continue
        what = f"{v.name} ({v.vcpus} {'dedicated ' if v.dedicated else ''}vCPUs, "
        what += f"{gib(v.memory)})"
        where = m.describe_cells(cells)
        how = ", split unevenly to fit" if placed.opt.weighted else ""
        if v.larger_than_cells:
            biggest = max((m.mem_cap[c] for c in m.cpu_cells), default=0)
            cpus = max((len(m.usable[c]) for c in m.cpu_cells), default=0)
            notes.append(
                f"{what} is larger than any cell (at most {gib(biggest)} and {cpus} usable "
                f"CPUs per cell): spread over the fewest, closest cells: {where}{how}"
            )
        else:
            notes.append(
                f"{what} is spread over cells {where}{how}: no single cell has room left for it"
            )
    # Cells already over capacity with locked VMs alone.
    for c in m.cell_ids:
        locked_mem = sum(a.memory_kib_by_cell.get(c, 0) for a in state.locked.values())
        if locked_mem > m.mem_cap[c]:
            notes.append(
                f"cell {c} is over its memory with locked VMs alone ({gib(locked_mem)} of "
                f"{gib(m.mem_cap[c])}): no other VM is placed there"
            )
    return notes
