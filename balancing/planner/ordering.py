"""In which order to apply a plan's moves (:func:`apply_order`) so that no CPU pool or cell is
over its capacity at any step, and why, when there is no such order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from balancing.planner.capacity import CapacityModel
from balancing.planner.current import HostMaps, current_on
from balancing.planner.model import Assignment, Plan, PlanError, VmDemand, nodes_text
from numaportal.virt.topology import HostTopology


class _Usage:
    """Memory and shared-pool use per cell while a plan is applied one VM at a time."""

    def __init__(self, model: CapacityModel, assignments: Iterable[Assignment]) -> None:
        self.m = model
        self.mem: dict[int, int] = dict.fromkeys(model.cell_ids, 0)
        self.shared: dict[int, int] = dict.fromkeys(model.cell_ids, 0)
        self.owners: Counter[int] = Counter()
        for a in assignments:
            self.apply(a, +1)

    def parts(self, a: Assignment) -> tuple[dict[int, int], dict[int, int], frozenset[int]]:
        own = self.m.owned(a)
        shared = {} if own is not None else dict(a.vcpus_by_cell)
        return dict(a.memory_kib_by_cell), shared, own or frozenset()

    def apply(self, a: Assignment, sign: int) -> None:
        mem, shared, own = self.parts(a)
        for c, kib in mem.items():
            self.mem[c] = self.mem.get(c, 0) + sign * kib
        for c, n in shared.items():
            self.shared[c] = self.shared.get(c, 0) + sign * n
        for cpu in own:
            self.owners[cpu] += sign

    def cells_of(self, a: Assignment) -> set[int]:
        mem, shared, own = self.parts(a)
        return (
            set(mem) | set(shared) | {self.m.cell_of[cpu] for cpu in own if cpu in self.m.cell_of}
        )

    def excess(self, c: int) -> tuple[int, int]:
        """(memory over the cell's allowance, shared vCPUs over the pool's commit)."""
        m = self.m
        usable = m.usable.get(c, frozenset())
        pool = sum(1 for cpu in usable if not self.owners[cpu])
        return (
            self.mem.get(c, 0) - m.mem_cap.get(c, 0),
            self.shared.get(c, 0) - m.limit(pool),
        )


def apply_order(topology: HostTopology, vms: Sequence[VmDemand], plan_: Plan) -> list[str]:
    """The order in which to move the plan's moved VMs so that no CPU pool or cell is over its
    capacity at any step (a step may not make a cell worse than it already is); raises
    :class:`PlanError` naming the VMs when no such order exists."""
    model = CapacityModel(topology, plan_.policy)
    byname = {vm.name: vm for vm in vms}
    moved = sorted(name for name, a in plan_.assignments.items() if a.moved)
    unknown = [name for name in moved if name not in byname]
    if unknown:
        raise PlanError(f"the plan moves VM(s) that are not on the host: {', '.join(unknown)}")
    host = HostMaps(topology)
    state = {vm.name: current_on(host, vm) for vm in vms}
    old = {name: state[name] for name in moved}
    new = {name: plan_.assignments[name] for name in moved}
    usage = _Usage(model, state.values())
    # What each cell may reach: its capacity, or how far over it already is before the plan.
    allowed = {c: tuple(max(0, x) for x in usage.excess(c)) for c in model.cell_ids}

    def over(cells: Iterable[int]) -> list[int]:
        bad = []
        for c in sorted(cells):
            mem, cpu = usage.excess(c) if c in allowed else (0, 0)
            limit = allowed.get(c, (0, 0))
            if mem > limit[0] or cpu > limit[1]:
                bad.append(c)
        return bad

    def step(name: str) -> list[int]:
        """Apply *name*'s move; return the cells it over-fills (the move is undone then)."""
        cells = usage.cells_of(old[name]) | usage.cells_of(new[name])
        usage.apply(old[name], -1)
        usage.apply(new[name], +1)
        bad = over(cells)
        if bad:
            usage.apply(new[name], -1)
            usage.apply(old[name], +1)
        return bad

    def frees(name: str) -> int:
        """How much of what it holds now a move gives back (moves that free room go first)."""
        mem_old, _, _ = usage.parts(old[name])
        mem_new, _, _ = usage.parts(new[name])
        return sum(max(0, kib - mem_new.get(c, 0)) for c, kib in mem_old.items())

    order: list[str] = []
    remaining = sorted(moved, key=lambda name: (-frees(name), name))
    while remaining:
        for name in remaining:
            if not step(name):
                order.append(name)
                remaining.remove(name)
                break
        else:
            raise PlanError(_stuck(usage, remaining, old, new, step))
    return order


def _stuck(
    usage: _Usage,
    remaining: list[str],
    old: Mapping[str, Assignment],
    new: Mapping[str, Assignment],
    step: Any,
) -> str:
    """Why no remaining VM can move: the VMs waiting for each other, in a cycle if there is
    one."""
    blocked_on = {name: step(name) for name in remaining}
    waits: dict[str, list[tuple[str, int]]] = {}
    for name in remaining:
        for c in blocked_on[name]:
            for other in remaining:
                if other == name:
                    continue
                before = old[other]
                after = new[other]
                frees_mem = before.memory_kib_by_cell.get(c, 0) > after.memory_kib_by_cell.get(c, 0)
                frees_cpu = before.vcpus_by_cell.get(c, 0) > after.vcpus_by_cell.get(c, 0)
                if frees_mem or frees_cpu:
                    waits.setdefault(name, []).append((other, c))
    # Depth-first search for a cycle in "waits for".
    for start in remaining:
        path: list[tuple[str, int]] = []
        seen: set[str] = set()

        def visit(name: str, path: list[tuple[str, int]] = path, seen: set[str] = seen) -> list:
            if name in seen:
                names = [n for n, _ in path]
                if name in names:
                    return path[names.index(name) :]
                return []
            seen.add(name)
            for other, c in waits.get(name, []):
                path.append((name, c))
                found = visit(other)
                if found:
                    return found
                path.pop()
            return []

        cycle = visit(start)
        if cycle:
            names = [n for n, _ in cycle]
            links = ", ".join(
                f"{n} needs room on cell {c} that {names[(i + 1) % len(names)]} frees"
                for i, (n, c) in enumerate(cycle)
            )
            return (
                f"no safe order: VMs {', '.join(names)} wait for each other ({links}); moving "
                "any of them first would over-fill a cell"
            )
    detail = "; ".join(
        f"{name} over-fills cell(s) {nodes_text(blocked_on[name])}" for name in remaining
    )
    return f"no safe order for VM(s) {', '.join(remaining)}: {detail}"
