"""Checking a plan against the capacity model: :func:`validate` lists every way a plan breaks it,
:func:`policy_problems` what is wrong with a policy itself on a host.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from balancing.planner.capacity import CapacityModel
from balancing.planner.current import HostMaps, current_on
from balancing.planner.model import MIB, Assignment, Plan, Policy, VmDemand, cpus_text, nodes_text
from numaportal.virt.topology import HostTopology


def policy_problems(topology: HostTopology, policy: Policy) -> list[str]:
    """What is wrong with *policy* itself on this host; empty when nothing."""
    problems = []
    if policy.strategy not in ("spread", "pack"):
        problems.append(f"unknown strategy {policy.strategy!r} (spread or pack)")
    if policy.emulator not in ("cell", "housekeeping"):
        problems.append(f"unknown emulator placement {policy.emulator!r} (cell or housekeeping)")
    if not policy.cpu_overcommit > 0:
        problems.append(f"CPU over-commit must be positive, not {policy.cpu_overcommit}")
    if policy.memory_reserve_kib < 0:
        problems.append("the memory reserve cannot be negative")
    if policy.emulator == "housekeeping":
        if not policy.housekeeping:
            problems.append("emulator threads go to housekeeping CPUs, but none are set")
        else:
            unknown = policy.housekeeping - topology.cpu_ids
            if unknown:
                problems.append(f"housekeeping CPU(s) {cpus_text(unknown)} are not on this host")
    return problems


def validate(
    topology: HostTopology,
    vms: Sequence[VmDemand],
    plan_: Plan,
) -> list[str]:
    """Every way *plan_* breaks the capacity model; empty when it is valid.

    Checked: every VM has an assignment and every vCPU a non-empty pin on existing, usable
    CPUs of its cells; no dedicated CPU is shared; no shared pool over its commit; no cell over
    its memory; locked VMs unchanged. The hypothesis tests and the apply path both use it.

    What locked VMs do among themselves (two locked VMs on one dedicated CPU, a cell already
    over its memory with locked VMs alone) is not the plan's doing and is not reported; any
    unlocked VM adding to it is.
    """
    policy = plan_.policy
    problems = [f"policy: {p}" for p in policy_problems(topology, policy)]
    model = CapacityModel(topology, policy)
    assignments = plan_.assignments
    seen: set[str] = set()
    for vm in vms:
        if vm.name in seen:
            problems.append(f"VM {vm.name} is listed twice")
        seen.add(vm.name)
    for name in sorted(set(assignments) - seen):
        problems.append(f"the plan places {name}, which is not among the VMs")

    placed: list[tuple[VmDemand, Assignment]] = []
    host = HostMaps(topology)
    for vm in vms:
        a = assignments.get(vm.name)
        if a is None:
            problems.append(f"{vm.name}: no assignment in the plan")
            continue
        placed.append((vm, a))
        if vm.locked:
            problems.extend(_locked_problems(host, vm, a))
        else:
            problems.extend(_assignment_problems(model, vm, a))

    # Dedicated CPUs: never shared with another VM's vCPUs or emulator threads.
    owners: dict[int, list[tuple[str, bool]]] = {}
    owned_by: dict[str, frozenset[int]] = {}
    for vm, a in placed:
        if not vm.dedicated:
            continue
        cpus = model.owned(a)
        if cpus is None:
            continue
        owned_by[vm.name] = cpus
        for cpu in cpus:
            owners.setdefault(cpu, []).append((vm.name, vm.locked))
    for cpu in sorted(owners):
        holders = owners[cpu]
        if len(holders) > 1 and not all(locked for _, locked in holders):
            names = ", ".join(sorted(name for name, _ in holders))
            problems.append(f"CPU {cpu} is dedicated to more than one VM: {names}")
    all_owned = frozenset(owners)
    for vm, a in placed:
        mine = owned_by.get(vm.name, frozenset())
        uses = [("vCPU", set().union(*a.vcpupin.values()) - mine if a.vcpupin else set())]
        uses.append(("emulator", set(a.emulatorpin)))
        for what, cpus in uses:
            clash = cpus & all_owned
            if not clash:
                continue
            others = sorted(
                {
                    name
                    for cpu in clash
                    for name, locked in owners[cpu]
                    if not (locked and vm.locked) and (name != vm.name or what == "emulator")
                }
            )
            if others:
                problems.append(
                    f"{vm.name}: {what} pinned on CPU(s) {cpus_text(clash)} dedicated to "
                    + ", ".join(others)
                )

    # Capacity per cell: memory, and the shared vCPUs on each shared pool.
    memory: dict[int, int] = {}
    memory_unlocked: set[int] = set()
    shared: dict[int, int] = {}
    shared_unlocked: set[int] = set()
    for vm, a in placed:
        for c, kib in a.memory_kib_by_cell.items():
            memory[c] = memory.get(c, 0) + kib
            if not vm.locked and kib:
                memory_unlocked.add(c)
        if vm.name in owned_by:
            if not vm.locked:
                shared_unlocked.update(
                    model.cell_of[cpu] for cpu in owned_by[vm.name] if cpu in model.cell_of
                )
            continue
        for c, n in a.vcpus_by_cell.items():
            shared[c] = shared.get(c, 0) + n
            if not vm.locked and n:
                shared_unlocked.add(c)
    for c in sorted(memory):
        cap = model.mem_cap.get(c, 0)
        if memory[c] > cap and c in memory_unlocked:
            problems.append(
                f"cell {c}: {memory[c] // MIB} MiB of VM memory, {cap // MIB} MiB allowed "
                f"({model.memory_kib.get(c, 0) // MIB} MiB minus the "
                f"{policy.memory_reserve_kib // MIB} MiB reserve)"
            )
    for c in sorted(shared):
        pool = len(model.usable.get(c, frozenset()) - all_owned)
        limit = model.limit(pool)
        if shared[c] > limit and c in shared_unlocked:
            problems.append(
                f"cell {c}: {shared[c]} shared vCPUs on a shared pool of {pool} CPU(s); "
                f"over-commit {policy.cpu_overcommit:g} allows {limit}"
            )
    return problems


def _locked_problems(host: HostMaps, vm: VmDemand, a: Assignment) -> list[str]:
    now = current_on(host, vm)
    changed = [
        what
        for what, same in (
            ("cells", a.cells == now.cells),
            ("vCPU pins", dict(a.vcpupin) == dict(now.vcpupin)),
            ("emulator pin", a.emulatorpin == now.emulatorpin),
            ("memory nodes", a.nodeset == now.nodeset),
            ("vCPUs per cell", dict(a.vcpus_by_cell) == dict(now.vcpus_by_cell)),
            ("memory per cell", dict(a.memory_kib_by_cell) == dict(now.memory_kib_by_cell)),
            ("moved flag", not a.moved),
        )
        if not same
    ]
    if changed:
        return [f"{vm.name} is locked, but the plan changes its {', '.join(changed)}"]
    return []


def _assignment_problems(model: CapacityModel, vm: VmDemand, a: Assignment) -> list[str]:
    policy = model.policy
    out: list[str] = []
    name = vm.name
    if a.name != name:
        out.append(f"{name}: its assignment is named {a.name!r}")
    wanted = set(range(max(0, vm.vcpus)))
    missing = wanted - set(a.vcpupin)
    extra = set(a.vcpupin) - wanted
    if missing:
        out.append(f"{name}: vCPU(s) {cpus_text(missing)} without a pin")
    if extra:
        out.append(f"{name}: pins for vCPU(s) {cpus_text(extra)}, but it has {vm.vcpus}")
    unknown_cells = (a.cells | a.nodeset) - set(model.cell_ids)
    if unknown_cells:
        out.append(f"{name}: cell(s) {nodes_text(unknown_cells)} are not on this host")
    allowed = frozenset().union(*(model.usable.get(c, frozenset()) for c in a.cells))
    counted: dict[int, int] = {}
    used: list[int] = []
    for v in sorted(a.vcpupin):
        cpus = a.vcpupin[v]
        if not cpus:
            out.append(f"{name}: vCPU {v} pinned to an empty cpuset")
            continue
        off_host = cpus - model.host_cpus
        if off_host:
            out.append(f"{name}: vCPU {v} pinned on CPU(s) {cpus_text(off_host)}, not on the host")
        reserved = (cpus & model.blocked_by_policy) - off_host
        if reserved:
            out.append(
                f"{name}: vCPU {v} pinned on reserved or housekeeping CPU(s) {cpus_text(reserved)}"
            )
        outside = cpus - allowed - off_host - reserved
        if outside:
            out.append(
                f"{name}: vCPU {v} pinned on CPU(s) {cpus_text(outside)} outside its cells "
                f"{nodes_text(a.cells) or '(none)'}"
            )
        pin_cells = {model.cell_of[cpu] for cpu in cpus if cpu in model.cell_of}
        if len(pin_cells) > 1:
            out.append(f"{name}: vCPU {v} pinned across cells {nodes_text(pin_cells)}")
        elif pin_cells:
            (c,) = pin_cells
            counted[c] = counted.get(c, 0) + 1
        if vm.dedicated:
            if len(cpus) != 1:
                out.append(f"{name}: dedicated vCPU {v} pinned to {len(cpus)} CPUs, not one")
            used.extend(cpus)
    if vm.dedicated:
        doubled = {cpu for cpu, n in Counter(used).items() if n > 1}
        if doubled:
            out.append(f"{name}: CPU(s) {cpus_text(doubled)} given to more than one vCPU")
    declared = {c: n for c, n in a.vcpus_by_cell.items() if n}
    if declared != counted and not missing:
        out.append(
            f"{name}: vCPUs per cell {dict(sorted(declared.items()))} do not match its pins "
            f"{dict(sorted(counted.items()))}"
        )
    if sum(a.memory_kib_by_cell.values()) != max(0, vm.memory_kib):
        out.append(
            f"{name}: {sum(a.memory_kib_by_cell.values())} KiB of memory placed, "
            f"it has {vm.memory_kib} KiB"
        )
    mem_cells = {c for c, kib in a.memory_kib_by_cell.items() if kib}
    if not mem_cells <= a.nodeset:
        out.append(
            f"{name}: memory on cell(s) {nodes_text(mem_cells - a.nodeset)} outside its "
            f"nodeset {nodes_text(a.nodeset) or '(none)'}"
        )
    if not (mem_cells | set(counted)) <= a.cells:
        out.append(f"{name}: uses cells outside its cells {nodes_text(a.cells) or '(none)'}")
    if not a.emulatorpin:
        out.append(f"{name}: emulator threads pinned to an empty cpuset")
    elif policy.emulator == "housekeeping":
        if not a.emulatorpin <= policy.housekeeping:
            out.append(
                f"{name}: emulator pinned on CPU(s) "
                f"{cpus_text(a.emulatorpin - policy.housekeeping)}, not housekeeping CPUs"
            )
    else:
        stray = a.emulatorpin - allowed
        if stray:
            out.append(
                f"{name}: emulator pinned on CPU(s) {cpus_text(stray)} outside the usable CPUs "
                f"of its cells"
            )
    return out
