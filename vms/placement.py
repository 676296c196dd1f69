"""The placement planner: where every VM of a host should live, as a reviewable plan.

The seed's advice is to keep each VM on one NUMA cell ("reduce interaction between CPU
modules"): local memory is fastest, a remote cell slower, a farther one (larger node distance)
slower still. :func:`plan` turns that into, for each VM, its cell(s), a vcpupin per vCPU, an
emulatorpin and a numatune nodeset, with the score before and after.

Pure Python: no Django, no libvirt. Input is a :class:`~numaportal.virt.topology.HostTopology`
plus :class:`VmDemand` rows and a :class:`Policy`.

Capacity model (the same for the planner, :func:`validate` and the benchmark's baselines):

- *usable CPUs* of a cell: its CPUs minus ``policy.reserved`` and, when emulator threads go to a
  housekeeping cpuset, minus ``policy.housekeeping``;
- a **dedicated** VM takes whole cores of its own when ``policy.whole_cores`` (all SMT siblings
  of a core, so ``ceil(vcpus / threads per core)`` cores, the spare siblings idle), otherwise one
  usable CPU per vCPU; each of its vCPUs is pinned to exactly one CPU, never shared;
- the **shared pool** of a cell is its usable CPUs not taken by dedicated VMs; the vCPUs of
  shared VMs on a cell may not exceed ``policy.cpu_overcommit`` x the pool size; each of their
  vCPUs is pinned to the whole pool of its cell;
- memory: the VMs' memory on a cell may not exceed the cell's memory minus
  ``policy.memory_reserve_kib``; a VM spread over several cells has its vCPUs and memory split
  over them in proportion (:func:`split_evenly`);
- **locked** VMs are never moved: their current cells, pins and memory count as they are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from numaportal.virt.topology import HostTopology

__all__ = [
    "Assignment",
    "InfeasibleError",
    "Plan",
    "PlanError",
    "Policy",
    "Score",
    "VmDemand",
    "apply_order",
    "distance",
    "plan",
    "score",
    "split_evenly",
    "validate",
]

LOCAL_DISTANCE = 10


class PlanError(ValueError):
    """A planning request that cannot be answered; the message says why, in operator words."""


class InfeasibleError(PlanError):
    """The VMs cannot fit under the policy at all (reserved CPUs, too many dedicated cores...)."""


@dataclass(frozen=True)
class VmDemand:
    """One VM as the planner sees it."""

    name: str
    vcpus: int
    memory_kib: int
    #: Cells its vCPUs may run on now (empty: unknown).
    cells: frozenset[int] = frozenset()
    #: Cells its memory is bound to now (numatune nodeset; empty: not bound -> ``cells``).
    memory_cells: frozenset[int] = frozenset()
    #: Current vcpupin, vCPU -> cpuset (only the pinned vCPUs).
    vcpupin: Mapping[int, frozenset[int]] = field(default_factory=dict)
    emulatorpin: frozenset[int] | None = None
    #: Never moved by a plan.
    locked: bool = False
    #: Needs CPUs of its own (whole cores when the policy says so), no over-commit.
    dedicated: bool = False


@dataclass(frozen=True)
class Policy:
    """How to place. Defaults: one cell per VM where possible, spread the load, no over-commit."""

    #: "spread": balance load over cells; "pack": fill cells in turn (leaves whole cells free).
    strategy: Literal["spread", "pack"] = "spread"
    #: vCPUs of shared VMs per usable physical CPU of a cell's shared pool (1.0: none).
    cpu_overcommit: float = 1.0
    #: Emulator threads: "cell" = on the VM's cells' pool; "housekeeping" = on ``housekeeping``.
    emulator: Literal["cell", "housekeeping"] = "cell"
    housekeeping: frozenset[int] = frozenset()
    #: Host CPUs never given to VMs (the host's own work).
    reserved: frozenset[int] = frozenset()
    #: Dedicated VMs get whole cores (SMT siblings together, spare siblings left idle).
    whole_cores: bool = True
    #: Memory per cell kept for the host (KiB).
    memory_reserve_kib: int = 0
    #: Weight of one moved VM in the score (see :class:`Score`).
    move_weight: float = 0.1


@dataclass(frozen=True)
class Assignment:
    """Where one VM lives in a plan (or now, for the "before" side)."""

    name: str
    cells: frozenset[int]
    #: vCPU -> cpuset, every vCPU of the VM.
    vcpupin: Mapping[int, frozenset[int]]
    emulatorpin: frozenset[int]
    #: numatune nodeset and mode.
    nodeset: frozenset[int]
    mode: str = "strict"
    #: vCPUs and memory per cell (what the capacity model and the score count).
    vcpus_by_cell: Mapping[int, int] = field(default_factory=dict)
    memory_kib_by_cell: Mapping[int, int] = field(default_factory=dict)
    #: Different cells or pins than now.
    moved: bool = False
    locked: bool = False
    dedicated: bool = False


@dataclass(frozen=True)
class Score:
    """The terms of a placement's score, each shown to the operator; lower ``total`` is better.

    - ``remote``: per GiB of VM memory, how far its vCPUs are from it:
      sum over VMs of memory_GiB(m) x vCPU share(c) x (distance(c, m) / 10 - 1), divided by the
      total memory in GiB. 0 = everything local; 1.1 = all memory at distance 21.
    - ``split``: share of VMs spread over more than one cell.
    - ``cpu_imbalance`` / ``memory_imbalance``: max - min load fraction over cells with CPUs /
      memory.
    - ``moves``: VMs placed differently than now.
    - ``total`` = 100 x (remote + 0.5 split + 0.25 (cpu_imbalance + memory_imbalance) / 2
      + move_weight x moves / VMs).
    """

    vms: int
    vms_on_one_cell: int
    remote: float
    remote_vcpus: float
    split: float
    cpu_imbalance: float
    memory_imbalance: float
    moves: int
    total: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "vms": self.vms,
            "vms_on_one_cell": self.vms_on_one_cell,
            "remote": round(self.remote, 4),
            "remote_vcpus": round(self.remote_vcpus, 2),
            "split": round(self.split, 4),
            "cpu_imbalance": round(self.cpu_imbalance, 4),
            "memory_imbalance": round(self.memory_imbalance, 4),
            "moves": self.moves,
            "total": round(self.total, 3),
        }


@dataclass(frozen=True)
class Plan:
    """A planner's answer."""

    assignments: dict[str, Assignment]
    before: Score
    after: Score
    policy: Policy
    #: One line per decision worth telling (a VM spread because it fits no cell, ...).
    notes: tuple[str, ...] = ()

    @property
    def moved(self) -> list[str]:
        return sorted(name for name, a in self.assignments.items() if a.moved)

    @property
    def improvement_pct(self) -> float:
        """How much lower the total score is, in percent of the before score."""
        if self.before.total <= 0:
            return 0.0
        return 100.0 * (self.before.total - self.after.total) / self.before.total


def distance(topology: HostTopology, a: int, b: int) -> int:
    """Node distance; 10 for a cell to itself, 20 (libvirt's default remote) when unknown."""
    if a == b:
        return LOCAL_DISTANCE
    return topology.cell(a).distances.get(b, 2 * LOCAL_DISTANCE)


def split_evenly(
    total: int, cells: Sequence[int], weights: Sequence[int] | None = None
) -> dict[int, int]:
    """*total* split over *cells* in proportion to *weights* (equal by default), as integers that
    add up to *total* (largest remainders first)."""
    if not cells:
        return {}
    weights = list(weights) if weights is not None else [1] * len(cells)
    wsum = sum(weights) or len(cells)
    exact = [total * w / wsum for w in weights]
    parts = [math.floor(x) for x in exact]
    order = sorted(range(len(cells)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return dict(zip(cells, parts, strict=True))


def score(
    topology: HostTopology,
    assignments: Iterable[Assignment],
    *,
    move_weight: float = 0.1,
) -> Score:
    """Score a placement (a plan's assignments, or the current state as assignments)."""
    items = list(assignments)
    total_mem_gib = sum(sum(a.memory_kib_by_cell.values()) for a in items) / 2**20 or 1.0
    remote = remote_vcpus = 0.0
    one_cell = moves = 0
    cpu_load: dict[int, float] = {}
    mem_load: dict[int, float] = {}
    for a in items:
        vcpus = sum(a.vcpus_by_cell.values()) or 1
        mem = a.memory_kib_by_cell
        mem_total = sum(mem.values()) or 1
        if len(a.cells) <= 1:
            one_cell += 1
        moves += a.moved
        for c, n in a.vcpus_by_cell.items():
            share = n / vcpus
            local_fraction = mem.get(c, 0) / mem_total
            remote_vcpus += n * (1 - local_fraction)
            for m, kib in mem.items():
                remote += share * kib / 2**20 * (distance(topology, c, m) / LOCAL_DISTANCE - 1)
            cpu_load[c] = cpu_load.get(c, 0) + n
        for m, kib in mem.items():
            mem_load[m] = mem_load.get(m, 0) + kib
    cpu_fracs = [cpu_load.get(cell.id, 0) / len(cell.cpus) for cell in topology.cells if cell.cpus]
    mem_fracs = [
        mem_load.get(cell.id, 0) / cell.memory_kib for cell in topology.cells if cell.memory_kib
    ]
    cpu_imb = (max(cpu_fracs) - min(cpu_fracs)) if len(cpu_fracs) > 1 else 0.0
    mem_imb = (max(mem_fracs) - min(mem_fracs)) if len(mem_fracs) > 1 else 0.0
    n = len(items) or 1
    remote_norm = remote / total_mem_gib
    split = (len(items) - one_cell) / n
    total = 100 * (
        remote_norm + 0.5 * split + 0.25 * (cpu_imb + mem_imb) / 2 + move_weight * moves / n
    )
    return Score(
        vms=len(items),
        vms_on_one_cell=one_cell,
        remote=remote_norm,
        remote_vcpus=remote_vcpus,
        split=split,
        cpu_imbalance=cpu_imb,
        memory_imbalance=mem_imb,
        moves=moves,
        total=total,
    )


def validate(
    topology: HostTopology,
    vms: Sequence[VmDemand],
    plan_: Plan,
) -> list[str]:
    """Every way *plan_* breaks the capacity model; empty when it is valid.

    Checked: every VM has an assignment and every vCPU a non-empty pin on existing, usable
    CPUs of its cells; no dedicated CPU is shared; no shared pool over its commit; no cell over
    its memory; locked VMs unchanged. The hypothesis tests and the apply path both use it.
    """
    raise NotImplementedError("validate: to be written with the planner")


def plan(topology: HostTopology, vms: Sequence[VmDemand], policy: Policy | None = None) -> Plan:
    """Propose a placement for every VM of the host (see the module docstring)."""
    raise NotImplementedError("plan: to be written")


def apply_order(topology: HostTopology, vms: Sequence[VmDemand], plan_: Plan) -> list[str]:
    """The order in which to move the plan's moved VMs so that no CPU pool or cell is over its
    capacity at any step (a step may not make a cell worse than it already is); raises
    :class:`PlanError` naming the VMs when no such order exists."""
    raise NotImplementedError("apply_order: to be written")
