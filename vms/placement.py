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

import hashlib
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from numaportal.virt.cpuset import format_cpuset, format_nodeset, parse_cpuset, parse_nodeset
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
    "current_assignment",
    "demand_digest",
    "distance",
    "plan",
    "score",
    "split_evenly",
    "validate",
]

LOCAL_DISTANCE = 10
GIB = 2**20  # KiB
MIB = 2**10  # KiB


class PlanError(ValueError):
    """A planning request that cannot be answered; the message says why, in operator words."""


class InfeasibleError(PlanError):
    """The VMs cannot fit under the policy at all (reserved CPUs, too many dedicated cores...)."""


# --- JSON helpers (plans are stored as JSON by the Django side) --------------------------------


def _cpus_text(ids: Iterable[int] | None) -> str:
    ids = frozenset(ids or ())
    return format_cpuset(ids) if ids else ""


def _nodes_text(ids: Iterable[int] | None) -> str:
    ids = frozenset(ids or ())
    return format_nodeset(ids) if ids else ""


def _parse_ids(value: Any, *, nodes: bool = False) -> frozenset[int]:
    """A stored cpuset/nodeset: libvirt syntax ("0-5,12-17"), "" / None for empty; a list of
    ints is accepted too."""
    if value is None or value == "":
        return frozenset()
    if isinstance(value, str):
        return parse_nodeset(value) if nodes else parse_cpuset(value)
    return frozenset(int(v) for v in value)


def _pins_dict(pins: Mapping[int, frozenset[int]]) -> dict[str, str]:
    return {str(v): _cpus_text(pins[v]) for v in sorted(pins)}


def _pins_from(value: Any) -> dict[int, frozenset[int]]:
    return {int(k): _parse_ids(v) for k, v in (value or {}).items()}


def _gib(kib: float) -> str:
    return f"{kib / GIB:.1f} GiB"


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

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types: cpusets and nodesets in libvirt syntax, vCPU keys as strings."""
        return {
            "name": self.name,
            "vcpus": self.vcpus,
            "memory_kib": self.memory_kib,
            "cells": _nodes_text(self.cells),
            "memory_cells": _nodes_text(self.memory_cells),
            "vcpupin": _pins_dict(self.vcpupin),
            "emulatorpin": _cpus_text(self.emulatorpin) if self.emulatorpin else None,
            "locked": self.locked,
            "dedicated": self.dedicated,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VmDemand:
        return cls(
            name=str(data["name"]),
            vcpus=int(data["vcpus"]),
            memory_kib=int(data["memory_kib"]),
            cells=_parse_ids(data.get("cells"), nodes=True),
            memory_cells=_parse_ids(data.get("memory_cells"), nodes=True),
            vcpupin=_pins_from(data.get("vcpupin")),
            emulatorpin=_parse_ids(data.get("emulatorpin")) or None,
            locked=bool(data.get("locked", False)),
            dedicated=bool(data.get("dedicated", False)),
        )


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "cpu_overcommit": self.cpu_overcommit,
            "emulator": self.emulator,
            "housekeeping": _cpus_text(self.housekeeping),
            "reserved": _cpus_text(self.reserved),
            "whole_cores": self.whole_cores,
            "memory_reserve_kib": self.memory_reserve_kib,
            "move_weight": self.move_weight,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        default = cls()
        return cls(
            strategy=data.get("strategy", default.strategy),
            cpu_overcommit=float(data.get("cpu_overcommit", default.cpu_overcommit)),
            emulator=data.get("emulator", default.emulator),
            housekeeping=_parse_ids(data.get("housekeeping")),
            reserved=_parse_ids(data.get("reserved")),
            whole_cores=bool(data.get("whole_cores", default.whole_cores)),
            memory_reserve_kib=int(data.get("memory_reserve_kib", default.memory_reserve_kib)),
            move_weight=float(data.get("move_weight", default.move_weight)),
        )


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

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types: cpusets and nodesets in libvirt syntax, vCPU/cell keys as strings."""
        return {
            "name": self.name,
            "cells": _nodes_text(self.cells),
            "vcpupin": _pins_dict(self.vcpupin),
            "emulatorpin": _cpus_text(self.emulatorpin),
            "nodeset": _nodes_text(self.nodeset),
            "mode": self.mode,
            "vcpus_by_cell": {str(c): n for c, n in sorted(self.vcpus_by_cell.items())},
            "memory_kib_by_cell": {str(c): k for c, k in sorted(self.memory_kib_by_cell.items())},
            "moved": self.moved,
            "locked": self.locked,
            "dedicated": self.dedicated,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Assignment:
        return cls(
            name=str(data["name"]),
            cells=_parse_ids(data.get("cells"), nodes=True),
            vcpupin=_pins_from(data.get("vcpupin")),
            emulatorpin=_parse_ids(data.get("emulatorpin")),
            nodeset=_parse_ids(data.get("nodeset"), nodes=True),
            mode=str(data.get("mode", "strict")),
            vcpus_by_cell={int(c): int(n) for c, n in (data.get("vcpus_by_cell") or {}).items()},
            memory_kib_by_cell={
                int(c): int(k) for c, k in (data.get("memory_kib_by_cell") or {}).items()
            },
            moved=bool(data.get("moved", False)),
            locked=bool(data.get("locked", False)),
            dedicated=bool(data.get("dedicated", False)),
        )


@dataclass(frozen=True)
class Score:
    """The terms of a placement's score, each shown to the operator; lower ``total`` is better.

    - ``remote``: per GiB of VM memory, how far its vCPUs are from it:
      sum over VMs of memory_GiB(m) x vCPU share(c) x (distance(c, m) / 10 - 1), divided by the
      total memory in GiB. 0 = everything local; 1.1 = all memory at distance 21.
    - ``split``: share of VMs spread over more than one cell.
    - ``cpu_imbalance`` / ``memory_imbalance``: max - min load fraction over cells with CPUs /
      memory. CPU load is vCPUs per CPU of the cell; when a cell has more vCPUs than CPUs
      (over-commit) the loads are taken relative to the most loaded cell, so that the term
      stays a fraction (0-1) like the memory one.
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

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types: assignments by VM name, the scores, notes, moved VMs."""
        return {
            "assignments": {name: a.as_dict() for name, a in sorted(self.assignments.items())},
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "policy": self.policy.as_dict(),
            "notes": list(self.notes),
            "moved": self.moved,
            "improvement_pct": round(self.improvement_pct, 2),
        }


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
    peak = max(cpu_fracs, default=0.0)
    if peak > 1:
        cpu_fracs = [f / peak for f in cpu_fracs]
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


class _HostMaps:
    """Look-ups :func:`current_assignment` needs, computed once per host."""

    def __init__(self, topology: HostTopology) -> None:
        self.cells = {cell.id: cell for cell in topology.cells}
        self.cell_of = {cpu.id: cell.id for cell in topology.cells for cpu in cell.cpus}
        self.cpu_cells = [cell.id for cell in topology.cells if cell.cpus]
        self.all_cpus = frozenset(self.cell_of)
        self.floating: dict[tuple[int, ...], frozenset[int]] = {}

    def cpus_of(self, cells: tuple[int, ...]) -> frozenset[int]:
        if cells not in self.floating:
            cpus = frozenset(cpu for c in cells for cpu in self.cells[c].cpu_ids)
            self.floating[cells] = cpus or self.all_cpus
        return self.floating[cells]


def current_assignment(topology: HostTopology, vm: VmDemand) -> Assignment:
    """*vm* as it is now, as an :class:`Assignment` (the "before" side of a plan, and what a
    locked VM keeps).

    Its cells are ``vm.cells`` (every cell with CPUs when unknown) plus the cells its memory is
    bound to; a vCPU pinned by ``vm.vcpupin`` keeps that pin, the others float over the CPUs of
    its cells. A vCPU whose pin lies within one cell counts on that cell, the others are split
    evenly over its cells with CPUs; memory is split over ``vm.memory_cells`` (``cells`` when
    not bound). CPUs and cells the host does not have are ignored for the counts.
    """
    return _current(_HostMaps(topology), vm)


def _current(host: _HostMaps, vm: VmDemand) -> Assignment:
    host_cells, cell_of = host.cells, host.cell_of
    cells = sorted(c for c in vm.cells if c in host_cells)
    if not cells:
        cells = list(host.cpu_cells) or sorted(host_cells)
    cpu_cells = tuple(c for c in cells if host_cells[c].cpus)
    floating = host.cpus_of(cpu_cells)
    pins: dict[int, frozenset[int]] = {}
    by_cell: dict[int, int] = {}
    unplaced = 0
    seen: dict[frozenset[int], set[int]] = {}
    for v in range(max(0, vm.vcpus)):
        given = vm.vcpupin.get(v)
        if not given:
            pins[v] = floating
            unplaced += 1
            continue
        pin = pins[v] = frozenset(given)
        if pin not in seen:
            seen[pin] = {cell_of[cpu] for cpu in pin if cpu in cell_of}
        if len(seen[pin]) == 1:
            (c,) = seen[pin]
            by_cell[c] = by_cell.get(c, 0) + 1
        else:
            unplaced += 1
    spread_over = cpu_cells or host.cpu_cells
    for c, n in split_evenly(unplaced, spread_over).items():
        if n:
            by_cell[c] = by_cell.get(c, 0) + n
    memory_cells = sorted(c for c in (vm.memory_cells or frozenset(cells)) if c in host_cells)
    if not memory_cells:
        memory_cells = cells
    with_memory = [c for c in memory_cells if host_cells[c].memory_kib] or memory_cells
    memory = {c: k for c, k in split_evenly(max(0, vm.memory_kib), with_memory).items() if k}
    return Assignment(
        name=vm.name,
        cells=frozenset(cells) | frozenset(by_cell) | frozenset(memory),
        vcpupin=pins,
        emulatorpin=frozenset(vm.emulatorpin) if vm.emulatorpin else floating,
        nodeset=frozenset(with_memory),
        vcpus_by_cell=dict(sorted(by_cell.items())),
        memory_kib_by_cell=memory,
        moved=False,
        locked=vm.locked,
        dedicated=vm.dedicated,
    )


def demand_digest(vms: Iterable[VmDemand]) -> str:
    """A stable sha256 (hex) of the demands, by name: it changes when any VM's vCPUs, memory,
    cells, pins, locked or dedicated flag change, or a VM comes or goes."""
    rows = sorted((vm.as_dict() for vm in vms), key=lambda row: row["name"])
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# --- the capacity model -----------------------------------------------------------------------


class _Model:
    """The capacity model of one host under one policy (module docstring), precomputed."""

    def __init__(self, topology: HostTopology, policy: Policy) -> None:
        self.topology = topology
        self.policy = policy
        blocked = set(policy.reserved)
        if policy.emulator == "housekeeping":
            blocked |= set(policy.housekeeping)
        self.blocked_by_policy = frozenset(blocked)
        self.cell_ids = [cell.id for cell in topology.cells]
        self.cell_cpus = {cell.id: cell.cpu_ids for cell in topology.cells}
        self.cell_of = {cpu.id: cell.id for cell in topology.cells for cpu in cell.cpus}
        self.host_cpus = frozenset(self.cell_of)
        self.siblings = {
            cpu.id: frozenset(cpu.siblings) for cell in topology.cells for cpu in cell.cpus
        }
        self.usable = {c: self.cell_cpus[c] - blocked for c in self.cell_ids}
        self.memory_kib = {cell.id: cell.memory_kib for cell in topology.cells}
        self.mem_cap = {
            cell.id: max(0, cell.memory_kib - policy.memory_reserve_kib) for cell in topology.cells
        }
        self.cpu_cells = [c for c in self.cell_ids if self.usable[c]]
        self.mem_cells = [c for c in self.cell_ids if self.mem_cap[c] > 0]
        # What a dedicated VM takes: whole cores whose threads are all usable, or single CPUs.
        self.units: dict[int, list[tuple[int, ...]]] = {}
        self.unit_of: dict[int, tuple[int, ...]] = {}
        for cell in topology.cells:
            usable = self.usable[cell.id]
            if policy.whole_cores:
                cores = sorted({tuple(sorted(cpu.siblings)) for cpu in cell.cpus})
                units = [core for core in cores if set(core) <= usable]
            else:
                units = [(cpu,) for cpu in sorted(usable)]
            self.units[cell.id] = units
            for unit in units:
                for cpu in unit:
                    self.unit_of[cpu] = unit
        self.unit_size = max((len(u) for us in self.units.values() for u in us), default=1)
        self.factor = {
            (a, b): distance(topology, a, b) / LOCAL_DISTANCE - 1
            for a in self.cell_ids
            for b in self.cell_ids
        }
        # The score's load denominators: all CPUs of a cell, all its memory.
        self.score_cpu = [(cell.id, len(cell.cpus)) for cell in topology.cells if cell.cpus]
        self.score_mem = [(cell.id, cell.memory_kib) for cell in topology.cells if cell.memory_kib]

    def limit(self, pool: int) -> int:
        """Shared vCPUs allowed on a shared pool of *pool* CPUs."""
        return math.floor(self.policy.cpu_overcommit * max(0, pool) + 1e-9)

    def owned(self, a: Assignment) -> frozenset[int] | None:
        """The CPUs a dedicated VM holds (siblings too with whole cores); None when *a* is not
        dedicated or not pinned one CPU per vCPU (then it counts like a shared VM)."""
        if not a.dedicated or not a.vcpupin:
            return None
        if any(len(cpus) != 1 for cpus in a.vcpupin.values()):
            return None
        cpus = set().union(*a.vcpupin.values())
        if self.policy.whole_cores:
            for cpu in list(cpus):
                cpus |= self.siblings.get(cpu, frozenset())
        return frozenset(cpus)

    def describe_cells(self, cells: Iterable[int]) -> str:
        cells = sorted(cells)
        text = _nodes_text(cells)
        if len(cells) < 2:
            return text
        far = max(distance(self.topology, a, b) for a in cells for b in cells)
        return f"{text} (node distance {far})"


def _policy_problems(topology: HostTopology, policy: Policy) -> list[str]:
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
                problems.append(f"housekeeping CPU(s) {_cpus_text(unknown)} are not on this host")
    return problems


# --- validate ---------------------------------------------------------------------------------


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
    problems = [f"policy: {p}" for p in _policy_problems(topology, policy)]
    model = _Model(topology, policy)
    assignments = plan_.assignments
    seen: set[str] = set()
    for vm in vms:
        if vm.name in seen:
            problems.append(f"VM {vm.name} is listed twice")
        seen.add(vm.name)
    for name in sorted(set(assignments) - seen):
        problems.append(f"the plan places {name}, which is not among the VMs")

    placed: list[tuple[VmDemand, Assignment]] = []
    host = _HostMaps(topology)
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
                    f"{vm.name}: {what} pinned on CPU(s) {_cpus_text(clash)} dedicated to "
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


def _locked_problems(host: _HostMaps, vm: VmDemand, a: Assignment) -> list[str]:
    now = _current(host, vm)
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


def _assignment_problems(model: _Model, vm: VmDemand, a: Assignment) -> list[str]:
    policy = model.policy
    out: list[str] = []
    name = vm.name
    if a.name != name:
        out.append(f"{name}: its assignment is named {a.name!r}")
    wanted = set(range(max(0, vm.vcpus)))
    missing = wanted - set(a.vcpupin)
    extra = set(a.vcpupin) - wanted
    if missing:
        out.append(f"{name}: vCPU(s) {_cpus_text(missing)} without a pin")
    if extra:
        out.append(f"{name}: pins for vCPU(s) {_cpus_text(extra)}, but it has {vm.vcpus}")
    unknown_cells = (a.cells | a.nodeset) - set(model.cell_ids)
    if unknown_cells:
        out.append(f"{name}: cell(s) {_nodes_text(unknown_cells)} are not on this host")
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
            out.append(f"{name}: vCPU {v} pinned on CPU(s) {_cpus_text(off_host)}, not on the host")
        reserved = (cpus & model.blocked_by_policy) - off_host
        if reserved:
            out.append(
                f"{name}: vCPU {v} pinned on reserved or housekeeping CPU(s) {_cpus_text(reserved)}"
            )
        outside = cpus - allowed - off_host - reserved
        if outside:
            out.append(
                f"{name}: vCPU {v} pinned on CPU(s) {_cpus_text(outside)} outside its cells "
                f"{_nodes_text(a.cells) or '(none)'}"
            )
        pin_cells = {model.cell_of[cpu] for cpu in cpus if cpu in model.cell_of}
        if len(pin_cells) > 1:
            out.append(f"{name}: vCPU {v} pinned across cells {_nodes_text(pin_cells)}")
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
            out.append(f"{name}: CPU(s) {_cpus_text(doubled)} given to more than one vCPU")
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
            f"{name}: memory on cell(s) {_nodes_text(mem_cells - a.nodeset)} outside its "
            f"nodeset {_nodes_text(a.nodeset) or '(none)'}"
        )
    if not (mem_cells | set(counted)) <= a.cells:
        out.append(f"{name}: uses cells outside its cells {_nodes_text(a.cells) or '(none)'}")
    if not a.emulatorpin:
        out.append(f"{name}: emulator threads pinned to an empty cpuset")
    elif policy.emulator == "housekeeping":
        if not a.emulatorpin <= policy.housekeeping:
            out.append(
                f"{name}: emulator pinned on CPU(s) "
                f"{_cpus_text(a.emulatorpin - policy.housekeeping)}, not housekeeping CPUs"
            )
    else:
        stray = a.emulatorpin - allowed
        if stray:
            out.append(
                f"{name}: emulator pinned on CPU(s) {_cpus_text(stray)} outside the usable CPUs "
                f"of its cells"
            )
    return out


# --- the planner ------------------------------------------------------------------------------

#: Relocation passes of the local improvement (each tries every VM on every cell once).
_PASSES = 4
#: At most this many VMs are moved out of a cell to make room for one that is split.
_MAX_EJECT = 4
#: Above this many cell sets of one size, sets are grown from each cell by distance instead.
_MAX_SETS = 2000
#: Repair of a split VM: cells tried, move/swap steps, VMs per cell considered for swaps.
_REPAIR_TARGETS = 3
_REPAIR_STEPS = 16
_SWAP_WIDTH = 12
_EPS = 1e-9


@dataclass(frozen=True)
class _Opt:
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
class _Vm:
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
    home: _Opt | None = None
    #: Placed on ``home``, its pins and emulator pin would stay exactly as they are.
    can_stay: bool = False
    #: Dedicated and staying: its current units per cell, in vCPU order.
    keep_units: dict[int, list[tuple[int, ...]]] | None = None
    singles: dict[int, _Opt | None] = field(default_factory=dict)
    #: Even splits over sets of cells (they do not depend on the state).
    spreads: dict[tuple[int, ...], _Opt | None] = field(default_factory=dict)


@dataclass
class _Placed:
    opt: _Opt
    #: Dedicated VMs: sizes of the units taken per cell.
    sizes: dict[int, tuple[int, ...]]
    moved: bool
    changed: bool


class _Planner:
    def __init__(self, model: _Model, vms: Sequence[VmDemand]) -> None:
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
        self.where: dict[int, _Placed] = {}
        self.single: dict[int, set[int]] = {c: set() for c in cells}
        self._sets: dict[int, list[tuple[int, ...]]] = {}

        self.vms: list[_Vm] = []
        self.locked: dict[str, Assignment] = {}
        taken: set[int] = set()
        blocked: set[int] = set()
        owned_now: set[int] = set()
        host = _HostMaps(model.topology)
        for i, vm in enumerate(vms):
            now = _current(host, vm)
            v = _Vm(
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
                self._prepare(v)

    # -- options ---------------------------------------------------------------------------

    def _remote_of(self, vcpus: Mapping[int, int], memory: Mapping[int, int]) -> float:
        if len(vcpus) <= 1 and len(memory) <= 1 and (not vcpus or vcpus.keys() == memory.keys()):
            return 0.0
        total = sum(vcpus.values()) or 1
        factor = self.m.factor
        out = 0.0
        for c, n in vcpus.items():
            share = n / total
            for mc, kib in memory.items():
                out += share * kib / GIB * factor[c, mc]
        return out

    def _option(self, v: _Vm, cells: Sequence[int], weighted: bool = False) -> _Opt | None:
        m = self.m
        cpu_part = [c for c in cells if m.usable[c]]
        mem_part = [c for c in cells if m.mem_cap[c] > 0]
        if (v.vcpus and not cpu_part) or (v.memory and not mem_part):
            return None
        wc: list[int] | None = None
        wm: list[int] | None = None
        if weighted:
            wm = [max(0, m.mem_cap[c] - self.mem[c]) for c in mem_part]
            if v.dedicated:
                wc = [sum(s * k for s, k in self.free[c].items()) for c in cpu_part]
            else:
                wc = [max(0, m.limit(self.pool[c]) - self.shared[c]) for c in cpu_part]
            if (v.memory and not sum(wm)) or (v.vcpus and not sum(wc)):
                return None
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
        return _Opt(used, vcpus, memory, self._remote_of(vcpus, memory), weighted)

    def _even(self, v: _Vm, cells: tuple[int, ...]) -> _Opt | None:
        if cells not in v.spreads:
            v.spreads[cells] = self._option(v, cells)
        return v.spreads[cells]

    def _single(self, v: _Vm, c: int) -> _Opt | None:
        if c not in v.singles:
            v.singles[c] = self._option(v, (c,))
        return v.singles[c]

    def _cell_sets(self, k: int) -> list[tuple[int, ...]]:
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

    # -- where a VM is now -------------------------------------------------------------------

    def _prepare(self, v: _Vm) -> None:
        m, now = self.m, v.now
        v.size = self._size(v)
        v.larger_than_cells = not any(self._fits_empty(v, c) for c in m.cpu_cells)
        if not now.cells <= set(self.spread_cells):
            return
        home = self._option(v, sorted(now.cells))
        if (
            home is None
            or home.cells != now.cells
            or home.vcpus != dict(now.vcpus_by_cell)
            or home.memory != dict(now.memory_kib_by_cell)
            or home.nodeset != now.nodeset
        ):
            return
        v.home = home
        if self.emulator_in_cell:
            emulator = frozenset().union(*(self.cur_pool[c] for c in home.vcpus))
        else:
            emulator = frozenset(self.policy.housekeeping)
        if now.emulatorpin != emulator:
            return
        order = [c for c in sorted(home.vcpus) for _ in range(home.vcpus[c])]
        if not v.dedicated:
            v.can_stay = all(now.vcpupin[i] == self.cur_pool[c] for i, c in enumerate(order))
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

    def _size(self, v: _Vm) -> tuple[float, float, str]:
        m = self.m
        mem_cap = max((m.mem_cap[c] for c in m.cpu_cells), default=0) or 1
        if v.dedicated:
            cpu_cap = max((len(m.units[c]) * m.unit_size for c in m.cpu_cells), default=0) or 1
            cpu = math.ceil(v.vcpus / m.unit_size) * m.unit_size / cpu_cap
        else:
            cpu_cap = max((m.limit(len(m.usable[c])) for c in m.cpu_cells), default=0) or 1
            cpu = v.vcpus / cpu_cap
        mem = v.memory / mem_cap
        return (-max(cpu, mem), -(cpu + mem), v.name)

    def _fits_empty(self, v: _Vm, c: int) -> bool:
        """Would *v* fit cell *c* with nothing else on it (the policy's capacity alone)?"""
        m = self.m
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
            return not (self.emulator_in_cell and v.vcpus and len(m.usable[c]) - taken < 1)
        return v.vcpus <= m.limit(len(m.usable[c]))

    # -- state -------------------------------------------------------------------------------

    def _take(self, c: int, n: int) -> tuple[int, ...] | None:
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

    def _fits(self, v: _Vm, opt: _Opt) -> dict[int, tuple[int, ...]] | None:
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
            take = self._take(c, n)
            if take is None:
                return None
            after = self.pool[c] - sum(take)
            if self.shared[c] > m.limit(after) or (self.emulator_in_cell and after < 1):
                return None
            sizes[c] = take
        return sizes

    def _estimate(self, v: _Vm, opt: _Opt) -> tuple[bool, bool]:
        """(moved, cells changed), as far as can be told before the pins are chosen."""
        at_home = v.home is not None and opt == v.home
        changed = opt.cells != v.now.cells or opt.nodeset != v.now.nodeset
        return not (at_home and v.can_stay), changed

    def _add(self, v: _Vm, opt: _Opt, sizes: dict[int, tuple[int, ...]]) -> None:
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
        moved, changed = self._estimate(v, opt)
        self.moves += moved
        self.changed += changed
        self.where[v.i] = _Placed(opt, sizes, moved, changed)

    def _remove(self, v: _Vm) -> _Placed:
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

    def _objective(self) -> tuple[float, float]:
        """The score's total (moves estimated, a fifth of a move per VM changing cells) and a
        smooth tie-break: the sum of squared utilisations (lower for spread, higher for pack)."""
        cpu = [self.vcpus[c] / n for c, n in self.m.score_cpu]
        mem = [self.mem[c] / k for c, k in self.m.score_mem]
        total = (
            self.r_coef * self.remote
            + self.s_coef * self.split
            + self.w_move * (self.moves + 0.2 * self.changed)
        )
        squares = self._squares()
        if not self.spread:
            return total, -squares
        imbalance = 0.0
        if len(cpu) > 1:
            peak = max(cpu)
            imbalance += (peak - min(cpu)) / (peak if peak > 1 else 1.0)
        if len(mem) > 1:
            imbalance += max(mem) - min(mem)
        return total + 12.5 * imbalance, squares

    def _used_cpu(self, c: int) -> float:
        """Shared vCPUs plus dedicated CPUs (in vCPU slots) of cell *c*."""
        return self.shared[c] + self.oc * (self.usable_n[c] - self.pool[c])

    def _squares(self) -> float:
        out = 0.0
        for c in self.m.cpu_cells:
            u = self._used_cpu(c) / self.cpu_cap[c]
            out += u * u
        for c in self.m.mem_cells:
            u = self.mem[c] / self.m.mem_cap[c]
            out += u * u
        return out

    @staticmethod
    def _better(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] < b[0] - _EPS or (abs(a[0] - b[0]) <= _EPS and a[1] < b[1] - _EPS)

    def _cost(self, v: _Vm, opt: _Opt, sizes: Mapping[int, tuple[int, ...]]) -> float:
        """Greedy cost of an option: the move penalty plus the growth of the squared
        utilisations of CPU and memory (spread: prefer the least used cells, which also keeps
        both resources in step; pack: the fullest that fit)."""
        moved, changed = self._estimate(v, opt)
        cost = self.w_move * (moved + 0.2 * changed)
        m = self.m
        grow = 0.0
        for c, n in opt.vcpus.items():
            cap = self.cpu_cap[c]
            add = self.oc * sum(sizes[c]) if v.dedicated else n
            u, f = self._used_cpu(c) / cap, add / cap
            grow += 2 * u * f + f * f
        for c, kib in opt.memory.items():
            cap = m.mem_cap[c]
            u, f = self.mem[c] / cap, kib / cap
            grow += 2 * u * f + f * f
        return cost + (12.5 * grow if self.spread else -12.5 * grow)

    # -- choosing ----------------------------------------------------------------------------

    def _single_fits(
        self, v: _Vm, exclude: int | None = None
    ) -> Iterator[tuple[int, _Opt, dict[int, tuple[int, ...]]]]:
        """Every cell (but *exclude*) where *v* fits alone now: (cell, option, core sizes)."""
        for c in self.m.cpu_cells:
            if c == exclude:
                continue
            opt = self._single(v, c)
            if opt is None:
                continue
            sizes = self._fits(v, opt)
            if sizes is not None:
                yield c, opt, sizes

    def _best_single(
        self, v: _Vm, exclude: int | None = None
    ) -> tuple[_Opt, dict[int, tuple[int, ...]]] | None:
        best = None
        for c, opt, sizes in self._single_fits(v, exclude):
            key = (self._cost(v, opt, sizes), c)
            if best is None or key < best[0]:
                best = (key, opt, sizes)
        return None if best is None else (best[1], best[2])

    def _best_spread(
        self, v: _Vm, max_cells: int | None = None
    ) -> tuple[_Opt, dict[int, tuple[int, ...]]] | None:
        """Fewest cells first, then the closest (lowest remote cost), then the cost; an even
        split first, in proportion to the free room when no even split fits."""
        top = len(self.spread_cells) if max_cells is None else max_cells
        for k in range(2, top + 1):
            for weighted in (False, True):
                best = None
                for cells in self._cell_sets(k):
                    opt = self._option(v, cells, True) if weighted else self._even(v, cells)
                    if opt is None or len(opt.cells) != k:
                        continue
                    sizes = self._fits(v, opt)
                    if sizes is None:
                        continue
                    key = (round(self.r_coef * opt.remote, 9), self._cost(v, opt, sizes), cells)
                    if best is None or key < best[0]:
                        best = (key, opt, sizes)
                if best is not None:
                    return best[1], best[2]
        return None

    def _place(self, v: _Vm) -> None:
        choice = self._best_single(v) or self._best_spread(v)
        if choice is not None:
            self._add(v, *choice)
            return
        # Fragmented: make room on one cell by moving smaller VMs elsewhere.
        for c in sorted(self.m.cpu_cells, key=lambda c: (self.mem[c] - self.m.mem_cap[c], c)):
            journal: list[tuple[_Vm, _Placed | None]] = []
            if self._make_room(v, c, journal, 2 * _MAX_EJECT):
                return
            self._rollback(journal)
        if not self._repair(v):
            raise InfeasibleError(self._no_room(v))

    def _no_room(self, v: _Vm) -> str:
        m = self.m
        parts = []
        for c in self.spread_cells:
            text = f"cell {c}: {_gib(max(0, m.mem_cap[c] - self.mem[c]))} free"
            if m.usable[c]:
                if v.dedicated:
                    cores = sum(self.free[c].values())
                    text += f", {cores} free {'core' if self.policy.whole_cores else 'CPU'}(s)"
                else:
                    slots = max(0, m.limit(self.pool[c]) - self.shared[c])
                    text += f", room for {slots} shared vCPU(s)"
            parts.append(text)
        kind = "dedicated " if v.dedicated else ""
        return (
            f"cannot place {v.name} ({v.vcpus} {kind}vCPUs, {_gib(v.memory)}): no cell or set "
            f"of cells has room left for it under the policy ({'; '.join(parts)})"
        )

    # -- local improvement -------------------------------------------------------------------

    def _rollback(self, journal: list[tuple[_Vm, _Placed | None]]) -> None:
        for v, old in reversed(journal):
            if v.i in self.where:
                self._remove(v)
            if old is not None:
                self._add(v, old.opt, old.sizes)

    def _deficit(self, v: _Vm, opt: _Opt, c: int) -> tuple[int, int, bool]:
        """What cell *c* lacks for *opt*: (memory KiB, shared vCPU slots, dedicated units)."""
        m = self.m
        mem = self.mem[c] + opt.memory.get(c, 0) - m.mem_cap[c]
        n = opt.vcpus.get(c, 0)
        if not v.dedicated:
            return max(0, mem), max(0, self.shared[c] + n - m.limit(self.pool[c])), False
        take = self._take(c, n) if n else ()
        if take is None:
            return max(0, mem), 0, True
        after = self.pool[c] - sum(take)
        units = self.emulator_in_cell and n > 0 and after < 1
        return max(0, mem), max(0, self.shared[c] - m.limit(after)), units

    def _make_room(
        self, v: _Vm, c: int, journal: list[tuple[_Vm, _Placed | None]], max_eject: int
    ) -> bool:
        """Place *v* alone on cell *c*, moving up to *max_eject* single-cell VMs of *c* to
        other cells if needed. Every change goes to *journal* (for :meth:`_rollback`)."""
        opt = self._single(v, c)
        if opt is None:
            return False
        if v.i in self.where:
            journal.append((v, self._remove(v)))
        else:
            journal.append((v, None))
        sizes = self._fits(v, opt)
        if sizes is None:
            mem, slots, units = self._deficit(v, opt, c)

            def helps(u: _Vm) -> bool:
                return bool(
                    (mem and u.memory)
                    or (slots and not u.dedicated and u.vcpus)
                    or (units and u.dedicated)
                )

            def covers(u: _Vm) -> bool:
                return (
                    u.memory >= mem
                    and (not slots or (not u.dedicated and u.vcpus >= slots))
                    and (not units or u.dedicated)
                )

            others = [self.vms[i] for i in sorted(self.single[c]) if i != v.i]
            others = [u for u in others if u.size >= v.size]  # not larger than v
            # First one VM that frees enough alone (already moving ones, then the smallest);
            # else the largest first.
            alone = sorted(
                (u for u in others if covers(u)),
                key=lambda u: (not self.where[u.i].moved, -u.size[0], -u.size[1], u.name),
            )
            rest = sorted((u for u in others if not covers(u)), key=lambda u: u.size)
            ejected = 0
            for u in [*alone, *rest]:
                if ejected >= max_eject:
                    break
                mem, slots, units = self._deficit(v, opt, c)
                if not (mem or slots or units):
                    break
                if u.i not in self.where or not helps(u):
                    continue
                old = self._remove(u)
                moved = self._best_single(u, exclude=c)
                if moved is None:
                    self._add(u, old.opt, old.sizes)
                    continue
                journal.append((u, old))
                self._add(u, *moved)
                ejected += 1
            sizes = self._fits(v, opt)
            if sizes is None:
                return False
        self._add(v, opt, sizes)
        return True

    def _over(self, c: int, mem: int, shared: int) -> float:
        """How far cell *c* would be over capacity with *mem* KiB and *shared* vCPUs (as
        fractions of its memory and of its shared pool's commit); 0 when within."""
        m = self.m
        out = 0.0
        cap = m.mem_cap[c]
        if mem > cap:
            out += (mem - cap) / max(cap, MIB)
        limit = m.limit(self.pool[c])
        if shared > limit:
            out += (shared - limit) / max(m.limit(self.usable_n[c]), 1)
        return out

    def _relieve(self, keep: _Vm, journal: list[tuple[_Vm, _Placed | None]]) -> bool:
        """Move and swap shared single-cell VMs (not *keep*, each at most once) between cells
        until no cell is over capacity; False when no step helps any more.

        Each step takes the best of: a move that over-fills no other cell, else such a swap,
        else any move or swap that lowers the total excess."""
        m = self.m
        cells = m.cpu_cells
        touched = {keep.i}

        def movable(c: int) -> list[_Vm]:
            return [
                self.vms[i]
                for i in sorted(self.single[c])
                if i not in touched and not self.vms[i].dedicated
            ]

        for _ in range(_REPAIR_STEPS):
            excess = {c: self._over(c, self.mem[c], self.shared[c]) for c in cells}
            over = [c for c in cells if excess[c] > 0]
            if not over:
                return True
            clean: tuple | None = None
            dirty: tuple | None = None
            for a in over:
                for u in movable(a):
                    for b in cells:
                        if b == a or self._single(u, b) is None:
                            continue
                        after_b = self._over(b, self.mem[b] + u.memory, self.shared[b] + u.vcpus)
                        delta = (
                            self._over(a, self.mem[a] - u.memory, self.shared[a] - u.vcpus)
                            + after_b
                            - excess[a]
                            - excess[b]
                        )
                        if delta >= -_EPS:
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
                        ws = [w for w in movable(b) if self._single(w, a) is not None]
                        for u in {u.i: u for u in us}.values():
                            if self._single(u, b) is None:
                                continue
                            for w in ws:
                                dm, dn = w.memory - u.memory, w.vcpus - u.vcpus
                                after_b = self._over(b, self.mem[b] - dm, self.shared[b] - dn)
                                delta = (
                                    self._over(a, self.mem[a] + dm, self.shared[a] + dn)
                                    + after_b
                                    - excess[a]
                                    - excess[b]
                                )
                                if delta >= -_EPS:
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
                journal.append((vm, self._remove(vm)))
                self._add(vm, self._single(vm, to), {})
        return not any(self._over(c, self.mem[c], self.shared[c]) > 0 for c in cells)

    def _repair(self, v: _Vm) -> bool:
        """Put *v* on one cell although it does not fit there, then move and swap other VMs
        until every cell is within capacity again (two resources fill unevenly: one cell out
        of memory, another out of CPU). Kept when it works, undone otherwise."""
        m = self.m
        old = self._remove(v) if v.i in self.where else None
        targets = []
        for c in m.cpu_cells:
            opt = self._single(v, c)
            if opt is None:
                continue
            sizes: dict[int, tuple[int, ...]] = {}
            if v.dedicated and v.vcpus:
                take = self._take(c, v.vcpus)
                if take is None or (self.emulator_in_cell and self.pool[c] - sum(take) < 1):
                    continue
                sizes = {c: take}
            self._add(v, opt, sizes)
            over = sum(self._over(x, self.mem[x], self.shared[x]) for x in m.cpu_cells)
            self._remove(v)
            targets.append((over, c, opt, sizes))
        targets.sort(key=lambda t: t[:2])
        for _, _, opt, sizes in targets[:_REPAIR_TARGETS]:
            journal: list[tuple[_Vm, _Placed | None]] = [(v, old)]
            self._add(v, opt, sizes)
            if self._relieve(v, journal):
                return True
            self._rollback(journal)
            if v.i in self.where:  # _rollback put it back where it was
                self._remove(v)
        if old is not None:
            self._add(v, old.opt, old.sizes)
        return False

    def _consolidate(self, v: _Vm) -> bool:
        """A split VM that would fit one cell: onto one cell, making room if need be, when
        that lowers the score."""
        before = self._objective()
        m = self.m
        targets = sorted(m.cpu_cells, key=lambda c: (self.mem[c] - m.mem_cap[c], c))
        for c in targets:
            journal: list[tuple[_Vm, _Placed | None]] = []
            if self._make_room(v, c, journal, _MAX_EJECT) and self._better(
                self._objective(), before
            ):
                return True
            self._rollback(journal)
        return False

    def _respread(self, v: _Vm) -> bool:
        """A VM that must be split: onto a better set of cells (no more of them) if any."""
        before = self._objective()
        old = self._remove(v)
        best = None
        for k in range(2, len(old.opt.cells) + 1):
            # Uneven splits only for a VM that needed one (not to balance the cells).
            for weighted in (False, True) if old.opt.weighted else (False,):
                if weighted and best is not None:
                    break
                for cells in self._cell_sets(k):
                    opt = self._option(v, cells, True) if weighted else self._even(v, cells)
                    if opt is None or len(opt.cells) != k or opt == old.opt:
                        continue
                    sizes = self._fits(v, opt)
                    if sizes is None:
                        continue
                    self._add(v, opt, sizes)
                    value = self._objective()
                    self._remove(v)
                    if (best is None or self._better(value, best[0])) and self._better(
                        value, before
                    ):
                        best = (value, opt, sizes)
            if best is not None:
                break
        if best is None:
            self._add(v, old.opt, old.sizes)
            return False
        self._add(v, best[1], best[2])
        return True

    def _relocate_pass(self, order: Sequence[_Vm]) -> bool:
        improved = False
        for v in order:
            placed = self.where[v.i]
            if len(placed.opt.cells) != 1:
                continue
            (here,) = placed.opt.cells
            before = self._objective()
            self._remove(v)
            best = None
            for _c, opt, sizes in self._single_fits(v, exclude=here):
                self._add(v, opt, sizes)
                value = self._objective()
                self._remove(v)
                if best is None or self._better(value, best[0]):
                    best = (value, opt, sizes)
            if best is not None and self._better(best[0], before):
                self._add(v, best[1], best[2])
                improved = True
            else:
                self._add(v, placed.opt, placed.sizes)
        return improved

    # -- the whole run -----------------------------------------------------------------------

    _STATE = ("mem", "shared", "vcpus", "free", "pool", "remote", "split", "moves", "changed")

    def _snapshot(self) -> dict[str, Any]:
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

    def _restore(self, snap: Mapping[str, Any]) -> None:
        for name in (*self._STATE, "where", "single"):
            value = snap[name]
            if name == "free":
                value = {c: Counter(k) for c, k in value.items()}
            elif name == "single":
                value = {c: set(s) for c, s in value.items()}
            elif isinstance(value, dict):
                value = dict(value)
            setattr(self, name, value)

    def run(self) -> dict[str, Assignment]:
        """Two greedy starts, each improved locally; the better one by the score wins.

        "fresh": dedicated VMs first (whole cores are the scarcest), then every VM largest
        first, where it fits best (a move costs its weight); "stay": VMs well placed on one
        cell stay there first while the cell has room, the others fill in. "fresh" packs
        better (VMs placed after they are sorted by size); "stay" moves fewer VMs. Both first
        put the VMs larger than any cell on the fewest, closest cells, while the cells are
        emptiest. The start leaving fewer VMs needlessly split wins, then the lower score."""
        free = [v for v in self.vms if not v.demand.locked]
        order = sorted(free, key=lambda v: v.size)
        base = self._snapshot()
        best: tuple[tuple[int, float, float], dict[str, Any]] | None = None
        error: InfeasibleError | None = None
        for keep_first in (False, True):
            self._restore(base)
            try:
                self._greedy(order, keep_first)
            except InfeasibleError as exc:
                error = error or exc
                continue
            self._improve(order)
            # A VM that fits one cell goes on one cell: fewer needless splits win first.
            needless = sum(
                1 for v in order if len(self.where[v.i].opt.cells) > 1 and not v.larger_than_cells
            )
            total, tie = self._objective()
            value = (needless, total, tie)
            if (
                best is None
                or value[0] < best[0][0]
                or (value[0] == best[0][0] and self._better(value[1:], best[0][1:]))
            ):
                best = (value, self._snapshot())
        if best is None:
            assert error is not None
            raise error
        self._restore(best[1])
        return self._materialise()

    def _greedy(self, order: Sequence[_Vm], keep_first: bool) -> None:
        # Dedicated VMs first (whole cores are the scarcest), then VMs larger than any cell.
        for v in order:
            if v.dedicated and (v.larger_than_cells or not keep_first):
                self._place(v)
        for v in order:
            if v.larger_than_cells and v.i not in self.where:
                self._place(v)
        if keep_first:
            for v in order:
                if v.i in self.where or v.home is None or len(v.home.cells) != 1:
                    continue
                sizes = self._fits(v, v.home)
                if sizes is not None:
                    self._add(v, v.home, sizes)
        for v in order:
            if v.i not in self.where:
                self._place(v)

    def _improve(self, order: Sequence[_Vm]) -> None:
        for v in order:
            needless = len(self.where[v.i].opt.cells) > 1 and not v.larger_than_cells
            if needless and not self._consolidate(v):
                self._repair(v)
        for v in order:
            if len(self.where[v.i].opt.cells) > 1:
                self._respread(v)
        for _ in range(_PASSES):
            if not self._relocate_pass(order):
                break
        for v in order:
            if len(self.where[v.i].opt.cells) > 1 and not v.larger_than_cells:
                self._consolidate(v)

    # -- pins --------------------------------------------------------------------------------

    def _materialise(self) -> dict[str, Assignment]:
        m, policy = self.m, self.policy
        taken = set(self.taken_base)
        busy = set(self.taken_base) | set(self.blocked_base)
        dedicated = [v for v in self.vms if v.dedicated and not v.demand.locked]
        dedicated.sort(key=lambda v: (not (v.can_stay and self.where[v.i].opt == v.home), v.name))
        ded_pins: dict[int, dict[int, frozenset[int]]] = {}
        for v in dedicated:
            placed = self.where[v.i]
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
        for v in self.vms:
            if v.demand.locked:
                out[v.name] = self.locked[v.name]
                continue
            opt = self.where[v.i].opt
            if v.dedicated:
                pins = ded_pins[v.i]
            else:
                pins = {}
                for c in sorted(opt.vcpus):
                    pool = pools[c]
                    for _ in range(opt.vcpus[c]):
                        pins[len(pins)] = pool
            if not self.emulator_in_cell:
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

    # -- explaining --------------------------------------------------------------------------

    def check_feasible(self) -> None:
        """Raise :class:`InfeasibleError` for requests no placement can meet, with numbers."""
        m, policy = self.m, self.policy
        free = [v for v in self.vms if not v.demand.locked]
        if not free:
            return
        if not m.cell_ids:
            raise InfeasibleError("the host reports no NUMA cells: there is nothing to place on")
        needs_cpu = [v for v in free if v.vcpus]
        if needs_cpu and not m.cpu_cells:
            host = _cpus_text(m.host_cpus) or "none"
            raise InfeasibleError(
                f"no usable CPU on this host: its CPUs ({host}) are all reserved "
                f"(reserved: {_cpus_text(policy.reserved) or 'none'}"
                + (
                    f", housekeeping: {_cpus_text(policy.housekeeping)}"
                    if policy.emulator == "housekeeping"
                    else ""
                )
                + f"), and {len(needs_cpu)} VM(s) need CPUs ({self._names(needs_cpu)})"
            )
        if not self.emulator_in_cell:
            clash = policy.housekeeping & self.taken_base
            if clash:
                holders = sorted(
                    name
                    for name, a in self.locked.items()
                    if a.dedicated and clash & set().union(*a.vcpupin.values())
                )
                raise InfeasibleError(
                    f"emulator threads go to housekeeping CPU(s) "
                    f"{_cpus_text(policy.housekeeping)}, but {_cpus_text(clash)} "
                    f"{'is' if len(clash) == 1 else 'are'} dedicated to locked VM(s) "
                    f"{', '.join(holders) or '(their siblings)'}"
                )
        dedicated = [v for v in free if v.dedicated and v.vcpus]
        if dedicated:
            word = "whole cores" if policy.whole_cores else "CPUs"
            size = m.unit_size
            need = sum(math.ceil(v.vcpus / size) for v in dedicated)
            have = sum(sum(self.free[c].values()) for c in m.cell_ids)
            if self.emulator_in_cell:
                # Each cell keeps at least one shared CPU for the emulator threads.
                have = sum(
                    min(sum(self.free[c].values()), max(0, (self.pool[c] - 1) // size))
                    for c in m.cell_ids
                )
            if need > have:
                total = sum(len(m.units[c]) for c in m.cell_ids)
                busy = self.taken_base | self.blocked_base
                blockers = sorted(
                    name
                    for name, a in self.locked.items()
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
                if self.emulator_in_cell:
                    why.append("each cell keeps a CPU for emulator threads")
                raise InfeasibleError(
                    f"the dedicated VMs need {need} {word} ({detail}{more}), but only {have} "
                    f"can be dedicated ({'; '.join(why)})"
                )
        want_mem = sum(v.memory for v in free)
        have_mem = sum(max(0, m.mem_cap[c] - self.mem[c]) for c in m.cell_ids)
        if want_mem > have_mem:
            locked_mem = sum(self.mem.values())
            raise InfeasibleError(
                f"the VMs to place need {_gib(want_mem)} of memory, the cells offer "
                f"{_gib(have_mem)} ({_gib(m.topology.total_memory_kib)} in all, minus "
                f"{_gib(policy.memory_reserve_kib)} reserved per cell"
                + (f", minus {_gib(locked_mem)} of locked VMs" if locked_mem else "")
                + ")"
            )
        shared = [v for v in free if not v.dedicated and v.vcpus]
        if shared:
            ded_cpus = sum(math.ceil(v.vcpus / m.unit_size) * m.unit_size for v in dedicated)
            pool = sum(self.pool[c] for c in m.cell_ids) - ded_cpus
            room = m.limit(pool) - sum(self.shared.values())
            want = sum(v.vcpus for v in shared)
            if want > room:
                raise InfeasibleError(
                    f"the shared VMs have {want} vCPUs, the shared pools allow {max(0, room)} "
                    f"({max(0, pool)} CPUs left after reserved and dedicated ones, over-commit "
                    f"{policy.cpu_overcommit:g}"
                    + (", minus the vCPUs of locked VMs" if any(self.shared.values()) else "")
                    + ")"
                )

    @staticmethod
    def _names(vms: Sequence[_Vm], limit: int = 6) -> str:
        names = sorted(v.name for v in vms)
        more = f" and {len(names) - limit} more" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    def explain(self, assignments: Mapping[str, Assignment]) -> list[str]:
        m, notes = self.m, list(self.notes)
        unknown = self.policy.reserved - m.host_cpus
        if unknown:
            notes.append(f"reserved CPU(s) {_cpus_text(unknown)} are not on this host (ignored)")
        for v in sorted(self.vms, key=lambda v: v.name):
            if v.demand.locked:
                continue
            placed = self.where[v.i]
            cells = placed.opt.cells
            if len(cells) < 2:
                continue
            what = f"{v.name} ({v.vcpus} {'dedicated ' if v.dedicated else ''}vCPUs, "
            what += f"{_gib(v.memory)})"
            where = m.describe_cells(cells)
            how = ", split unevenly to fit" if placed.opt.weighted else ""
            if v.larger_than_cells:
                biggest = max((m.mem_cap[c] for c in m.cpu_cells), default=0)
                cpus = max((len(m.usable[c]) for c in m.cpu_cells), default=0)
                notes.append(
                    f"{what} is larger than any cell (at most {_gib(biggest)} and {cpus} usable "
                    f"CPUs per cell): spread over the fewest, closest cells: {where}{how}"
                )
            else:
                notes.append(
                    f"{what} is spread over cells {where}{how}: no single cell has room left for it"
                )
        # Cells already over capacity with locked VMs alone.
        for c in m.cell_ids:
            locked_mem = sum(a.memory_kib_by_cell.get(c, 0) for a in self.locked.values())
            if locked_mem > m.mem_cap[c]:
                notes.append(
                    f"cell {c} is over its memory with locked VMs alone ({_gib(locked_mem)} of "
                    f"{_gib(m.mem_cap[c])}): no other VM is placed there"
                )
        return notes


def plan(topology: HostTopology, vms: Sequence[VmDemand], policy: Policy | None = None) -> Plan:
    """Propose a placement for every VM of the host (see the module docstring).

    Locked VMs stay as they are and count first. Then two greedy starts, largest VMs first:
    VMs larger than any cell go on the fewest, closest cells (lowest remote cost; an even
    split, in proportion to the free room only when no even split fits); every other VM on
    the single cell where it fits best (least used CPU and memory for "spread", fullest for
    "pack", a move costing ``policy.move_weight``), split only when no cell has room. One
    start places dedicated VMs first, the other keeps VMs already well placed on one cell
    where they are. Each start is improved locally (a split VM moved onto one cell, making
    room by moving or swapping other VMs; VMs relocated one at a time while the score drops),
    and the start with fewer needlessly split VMs, then the lower score, wins. Pins follow:
    dedicated vCPUs one per CPU on whole cores of their own (kept where they are when
    possible), shared vCPUs on their cell's shared pool. Deterministic.

    Raises :class:`InfeasibleError` (naming the VMs and the numbers) when the VMs cannot fit
    under the policy, :class:`PlanError` for a malformed request.
    """
    policy = policy or Policy()
    problems = _policy_problems(topology, policy)
    if problems:
        error = InfeasibleError if all("housekeeping" in p for p in problems) else PlanError
        raise error("; ".join(problems))
    names = Counter(vm.name for vm in vms)
    twice = sorted(name for name, n in names.items() if n > 1)
    if twice:
        raise PlanError(f"VM(s) listed more than once: {', '.join(twice)}")
    negative = sorted(vm.name for vm in vms if vm.vcpus < 0 or vm.memory_kib < 0)
    if negative:
        raise PlanError(f"VM(s) with a negative vCPU count or memory: {', '.join(negative)}")
    model = _Model(topology, policy)
    planner = _Planner(model, vms)
    planner.check_feasible()
    assignments = planner.run()
    ordered = {vm.name: assignments[vm.name] for vm in vms}
    now = [v.now for v in planner.vms]
    before = score(topology, now, move_weight=policy.move_weight)
    after = score(topology, ordered.values(), move_weight=policy.move_weight)
    return Plan(
        assignments=ordered,
        before=before,
        after=after,
        policy=policy,
        notes=(*_current_breaks_policy(topology, vms, now, policy), *planner.explain(ordered)),
    )


#: How many of the current placement's policy violations a note lists.
_BREAKS_SHOWN = 3
#: validate() messages that say the current placement breaks the policy (capacity, reserve).
_BREAKS = re.compile(r"reserved or housekeeping|dedicated to|MiB allowed|over-commit")


def _current_breaks_policy(
    topology: HostTopology,
    vms: Sequence[VmDemand],
    now: Sequence[Assignment],
    policy: Policy,
) -> list[str]:
    """A note when the current placement itself breaks the policy (VMs on reserved CPUs, a
    pool over its commit...): the score does not count that, so a plan that fixes it can
    score worse than now, and the reviewer should see why it moves VMs anyway."""
    baseline = score(topology, now)
    current = Plan({a.name: a for a in now}, before=baseline, after=baseline, policy=policy)
    # Only what the policy forbids; a VM floating over several cells is what the score counts.
    problems = [p for p in validate(topology, vms, current) if _BREAKS.search(p)]
    if not problems:
        return []
    shown = "; ".join(problems[:_BREAKS_SHOWN])
    more = f" (and {len(problems) - _BREAKS_SHOWN} more)" if len(problems) > _BREAKS_SHOWN else ""
    return [
        f"the current placement breaks the policy, which the score does not count: {shown}"
        f"{more}. Moves that fix it can make the total score higher than now."
    ]


# --- apply order ------------------------------------------------------------------------------


class _Usage:
    """Memory and shared-pool use per cell while a plan is applied one VM at a time."""

    def __init__(self, model: _Model, assignments: Iterable[Assignment]) -> None:
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
    model = _Model(topology, plan_.policy)
    byname = {vm.name: vm for vm in vms}
    moved = sorted(name for name, a in plan_.assignments.items() if a.moved)
    unknown = [name for name in moved if name not in byname]
    if unknown:
        raise PlanError(f"the plan moves VM(s) that are not on the host: {', '.join(unknown)}")
    host = _HostMaps(topology)
    state = {vm.name: _current(host, vm) for vm in vms}
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
        f"{name} over-fills cell(s) {_nodes_text(blocked_on[name])}" for name in remaining
    )
    return f"no safe order for VM(s) {', '.join(remaining)}: {detail}"
