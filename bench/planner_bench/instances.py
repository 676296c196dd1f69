"""The seeded instances of the planner benchmark: VM sizes, host memory from the VMs (or the
fixture's), dedicated and locked VMs, the over-commit, a random current placement of the VMs,
and the list of hosts the benchmark runs on."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, replace
from typing import Any

from balancing.planner import Policy, VmDemand
from bench.planner_bench.capacity import GIB, MIB, Capacity, Load
from bench.planner_bench.hosts import fixture_host, generated_host, with_memory
from numaportal.virt.topology import HostTopology


@dataclass
class Instance:
    name: str
    topology: HostTopology
    vms: list[VmDemand]
    policy: Policy
    fill: float  # VM memory / usable memory (after the reserve)
    solve_ip: bool

    @property
    def counts(self) -> str:
        big = sum(1 for vm in self.vms if vm.name.startswith("big"))
        ded = sum(1 for vm in self.vms if vm.dedicated)
        locked = sum(1 for vm in self.vms if vm.locked)
        return f"{len(self.vms)} ({big}/{ded}/{locked})"


def draw_sizes(rng: random.Random, n: int) -> list[tuple[int, int]]:
    """(vCPUs, GiB) of typical VMs: 1-16 vCPUs, 1-8 GiB per vCPU, 1-64 GiB."""
    out = []
    for _ in range(n):
        vcpus = rng.choice((1, 2, 2, 2, 4, 4, 4, 4, 8, 8, 12, 16))
        gib = min(64, max(1, vcpus * rng.choice((1, 2, 2, 4, 4, 8))))
        out.append((vcpus, gib))
    return out


def make_instance(
    name: str,
    rng: random.Random,
    shape: HostTopology,
    *,
    n_vms: int,
    fill: float,
    generated: bool,
    big: int = 0,
    dedicated_share: float = 0.05,
    locked_share: float = 0.04,
    unpinned_share: float = 0.3,
    cpu_fill: float = 0.8,
    memory_only_ratio: float = 0.5,
    solve_ip: bool = False,
) -> Instance:
    cpu_cells = [c.id for c in shape.cells if c.cpus]
    n_big = big
    sizes = draw_sizes(rng, n_vms - n_big)
    base_kib = sum(gib for _, gib in sizes) * GIB
    factors = [rng.uniform(1.05, 1.25) for _ in range(n_big)]

    if generated:
        # Cell memory from the VMs: fill x usable memory = all VM memory, CXL cells smaller.
        mem_only = [c.id for c in shape.cells if not c.cpus]
        weight = len(cpu_cells) + memory_only_ratio * len(mem_only)
        room = fill * weight - sum(factors)  # cells' worth of memory for the ordinary VMs
        if room < 0.3:
            raise SystemExit(f"{name}: the big VMs alone fill the host; fewer of them")
        cell_kib = base_kib / room
        cell_gib = math.ceil(cell_kib / GIB)
        reserve = 2 * GIB
        memory = dict.fromkeys(cpu_cells, cell_gib * GIB + reserve)
        memory.update({c: round(memory_only_ratio * cell_gib) * GIB + reserve for c in mem_only})
        topology = with_memory(shape, memory)
        cell = cell_gib * GIB
        scale = 1.0
    else:
        topology = shape
        smallest = min(c.memory_kib for c in shape.cells if c.memory_kib)
        reserve = min(2 * GIB, smallest // 16) // MIB * MIB
        usable = sum(max(0, c.memory_kib - reserve) for c in shape.cells)
        # "A cell" on hosts with unequal cells: the mean CPU cell (the smaller ones must
        # still be able to take half of a big VM).
        cell = statistics.fmean(c.memory_kib - reserve for c in shape.cells if c.cpus)
        scale = (fill * usable - sum(factors) * cell) / base_kib
    vms: list[VmDemand] = []
    widest = max(len(c.cpus) for c in shape.cells)  # no ordinary VM wider than a cell
    for i, (vcpus, gib) in enumerate(sizes):
        kib = max(16 * MIB, int(gib * GIB * scale) // MIB * MIB)
        vms.append(VmDemand(name=f"vm{i:03d}", vcpus=min(vcpus, widest), memory_kib=kib))
    for j, f in enumerate(factors):
        kib = int(f * cell) // MIB * MIB
        vms.append(VmDemand(name=f"big{j}", vcpus=rng.choice((16, 24, 32)), memory_kib=kib))

    # Host CPUs: the first core of cell 0 reserved on generated hosts.
    reserved = frozenset(topology.cells[0].cpus[0].siblings) if generated else frozenset()
    cpus_per_cell = min(len(c.cpus) for c in topology.cells if c.cpus)
    # Dedicated VMs (small, 2 or 4 vCPUs) and locked VMs, picked among the ordinary ones.
    normal = list(range(n_vms - n_big))
    rng.shuffle(normal)
    n_ded = round(dedicated_share * n_vms) if cpus_per_cell >= 8 else 0
    n_locked = max(1, round(locked_share * n_vms)) if n_vms >= 20 else 0
    for i in normal[:n_ded]:
        vms[i] = replace(vms[i], vcpus=rng.choice((2, 4)), dedicated=True)
    for i in normal[n_ded : n_ded + n_locked]:
        vms[i] = replace(vms[i], locked=True)

    # Over-commit so that shared vCPUs fill cpu_fill of the shared pools (at least 1.0).
    usable = sum(len(c.cpus) for c in topology.cells) - len(reserved)
    tpc = topology.threads_per_core
    ded_cpus = sum(math.ceil(vm.vcpus / tpc) * tpc for vm in vms if vm.dedicated)
    shared = sum(vm.vcpus for vm in vms if not vm.dedicated)
    oc = max(1.0, math.ceil(4 * shared / (cpu_fill * (usable - ded_cpus))) / 4)
    policy = Policy(
        cpu_overcommit=oc,
        reserved=reserved,
        memory_reserve_kib=reserve,
        whole_cores=True,
        emulator="cell",
        strategy="spread",
    )
    vms = place_now(rng, topology, policy, vms, unpinned_share)
    usable_mem = sum(max(0, c.memory_kib - reserve) for c in topology.cells)
    real_fill = sum(vm.memory_kib for vm in vms) / usable_mem
    return Instance(name, topology, vms, policy, real_fill, solve_ip)


def place_now(
    rng: random.Random,
    topology: HostTopology,
    policy: Policy,
    vms: list[VmDemand],
    unpinned_share: float,
) -> list[VmDemand]:
    """A random current placement: locked VMs where they fit (they stay there), the others
    unpinned (all cells, no numatune) or pinned to one random cell (two for big VMs)."""
    cap = Capacity(topology, policy)
    load = Load(cap, [])
    out = []
    all_cells = frozenset(cap.cpu_cells)
    for vm in sorted(vms, key=lambda v: (not v.locked, not v.dedicated, v.name)):
        if vm.locked:
            # Keep room for the others: the cell with most free memory that fits.
            for c in sorted(cap.cpu_cells, key=lambda c: -load.mem_free[c]):
                vcpus, memory = cap.split(vm, [c])
                if load.fits(vm, vcpus, memory):
                    break
            else:
                raise SystemExit(f"{vm.name}: a locked VM fits no cell; change the instance")
            if vm.dedicated:
                k = load.units_needed(c, vm.vcpus)
                units = load.free_units(c)[:k]
                cpus = [cpu for u in units for cpu in u][: vm.vcpus]
                pins = {v: frozenset({cpu}) for v, cpu in enumerate(cpus)}
            else:  # pinned 1:1 by hand, on the last free CPUs of the cell
                units = load.free_units(c)[::-1] or [tuple(sorted(cap.usable[c]))]
                cpus = [cpu for u in units for cpu in u]
                pins = {v: frozenset({cpus[v % len(cpus)]}) for v in range(vm.vcpus)}
                load.blocked |= set().union(*pins.values())
            load.add(vm, vcpus, memory)
            out.append(
                replace(
                    vm,
                    cells=frozenset({c}),
                    memory_cells=frozenset({c}),
                    vcpupin=pins,
                    emulatorpin=frozenset().union(*pins.values()),
                )
            )
        elif rng.random() < unpinned_share and not vm.dedicated:
            out.append(replace(vm, cells=all_cells))
        else:
            k = 2 if vm.name.startswith("big") and len(cap.cpu_cells) > 1 else 1
            cells = sorted(rng.sample(cap.cpu_cells, k))
            cpus = sorted(frozenset().union(*(cap.usable[c] for c in cells)))
            if vm.dedicated:
                chosen = rng.sample(cpus, min(vm.vcpus, len(cpus)))
                pins = {v: frozenset({cpu}) for v, cpu in enumerate(chosen)}
            else:
                pins = dict.fromkeys(range(vm.vcpus), frozenset(cpus))
            out.append(
                replace(
                    vm,
                    cells=frozenset(cells),
                    memory_cells=frozenset(cells),
                    vcpupin=pins,
                    emulatorpin=frozenset(cpus),
                )
            )
    return sorted(out, key=lambda v: v.name)


def instances(seed: int) -> list[Instance]:
    out: list[Instance] = []

    def rng(name: str, kw: dict) -> random.Random:
        # One stream per instance: adding or changing one leaves the others as they were.
        return random.Random(f"{seed}/{name}/{kw['n_vms']}/{kw['fill']}")

    def gen(name: str, shape: HostTopology, **kw: Any) -> None:
        out.append(make_instance(name, rng(name, kw), shape, generated=True, **kw))

    def fix(name: str, file: str, **kw: Any) -> None:
        out.append(make_instance(name, rng(name, kw), fixture_host(file), generated=False, **kw))

    # Small enough for the integer program.
    gen("1 socket", generated_host(sockets=1), n_vms=10, fill=0.9, solve_ip=True)
    gen("2 sockets", generated_host(sockets=2), n_vms=24, fill=0.95, solve_ip=True)
    gen("2 sockets", generated_host(sockets=2), n_vms=30, fill=0.9, big=1, solve_ip=True)
    gen(
        "2 sockets + 2 CXL (memory-only)",
        generated_host(sockets=2, memory_only=2),
        n_vms=24,
        fill=0.85,
        solve_ip=True,
    )
    snc = generated_host(sockets=2, cells_per_socket=2, cores=12)
    gen("2 sockets x 2 SNC", snc, n_vms=30, fill=0.95, solve_ip=True)
    gen("2 sockets x 2 SNC", snc, n_vms=30, fill=0.9, big=1, solve_ip=True)
    ring4 = generated_host(sockets=4, cores=12)
    gen("4 sockets, ring", ring4, n_vms=30, fill=0.92, big=1, solve_ip=True)
    fix(
        "fixture 2node-24cpu-ht",
        "x86_64-2node-24cpu-ht.xml",
        n_vms=20,
        fill=0.9,
        big=1,
        solve_ip=True,
    )
    fix(
        "fixture 2node-64cpu-amd-smt",
        "x86_64-2node-64cpu-amd-smt.xml",
        n_vms=30,
        fill=0.85,
        big=1,
        solve_ip=True,
    )
    # 16 GiB with CPUs, 64 GiB without: evenly split VMs can use at most 2 x 16 GiB (40 %).
    memory_only = "x86_64-2node-memory-only-cell.xml"
    fix("fixture 2node-memory-only-cell", memory_only, n_vms=12, fill=0.35, solve_ip=True)
    fix("fixture 2node-memory-only-cell", memory_only, n_vms=12, fill=0.75, solve_ip=True)
    fix("fixture 4node-basic", "x86_64-4node-basic.xml", n_vms=16, fill=0.85, big=1, solve_ip=True)
    fix("fixture 1node-dies", "x86_64-1node-dies.xml", n_vms=10, fill=0.9, solve_ip=True)
    fix("fixture 1node-2cpu-lab", "x86_64-1node-2cpu-lab.xml", n_vms=10, fill=0.8, solve_ip=True)
    # Larger: planner and baselines only.
    gen(
        "3 sockets x 2 NPS",
        generated_host(sockets=3, cells_per_socket=2),
        n_vms=100,
        fill=0.9,
        big=1,
        solve_ip=True,
    )
    ring8 = generated_host(sockets=4, cells_per_socket=2)
    gen("4 sockets x 2 SNC, ring", ring8, n_vms=200, fill=0.92, big=2)
    ring10 = generated_host(sockets=5, cells_per_socket=2, cores=24)
    gen("5 sockets x 2 SNC, ring", ring10, n_vms=500, fill=0.85, big=2)
    gen("5 sockets x 2 SNC, ring", ring10, n_vms=500, fill=0.95, big=3)
    return out
