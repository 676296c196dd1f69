"""The planner's data: what it is given (:class:`VmDemand`, :class:`Policy`), what it answers
(:class:`Assignment`, :class:`Score`, :class:`Plan`), its errors, and their JSON round trips
(plans are stored as JSON by the Django side), plus how cpusets, nodesets and sizes are written.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from numaportal.virt.cpuset import format_cpuset, format_nodeset, parse_cpuset, parse_nodeset

GIB = 2**20  # KiB
MIB = 2**10  # KiB


class PlanError(ValueError):
    """A planning request that cannot be answered; the message says why, in operator words."""


class InfeasibleError(PlanError):
    """The VMs cannot fit under the policy at all (reserved CPUs, too many dedicated cores...)."""


# --- how cpusets, nodesets and sizes are written (JSON and messages) ------------------------------


def cpus_text(ids: Iterable[int] | None) -> str:
    return _formatted(frozenset(ids or ()), nodes=False)


def nodes_text(ids: Iterable[int] | None) -> str:
    return _formatted(frozenset(ids or ()), nodes=True)


# A sweep digests every VM of a fleet (balancing.staleness): the same few cpusets and nodesets
# again and again. Strings, safe to share.
@functools.lru_cache(maxsize=8192)
def _formatted(ids: frozenset[int], *, nodes: bool) -> str:
    if not ids:
        return ""
    return format_nodeset(ids) if nodes else format_cpuset(ids)


def _parse_ids(value: Any, *, nodes: bool = False) -> frozenset[int]:
    """A stored cpuset/nodeset: libvirt syntax ("0-5,12-17"), "" / None for empty; a list of
    ints is accepted too."""
    if value is None or value == "":
        return frozenset()
    if isinstance(value, str):
        return parse_nodeset(value) if nodes else parse_cpuset(value)
    return frozenset(int(v) for v in value)


def _pins_dict(pins: Mapping[int, frozenset[int]]) -> dict[str, str]:
    return {str(v): cpus_text(pins[v]) for v in sorted(pins)}


def _pins_from(value: Any) -> dict[int, frozenset[int]]:
    return {int(k): _parse_ids(v) for k, v in (value or {}).items()}


def gib(kib: float) -> str:
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
            "cells": nodes_text(self.cells),
            "memory_cells": nodes_text(self.memory_cells),
            "vcpupin": _pins_dict(self.vcpupin),
            "emulatorpin": cpus_text(self.emulatorpin) if self.emulatorpin else None,
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
            "housekeeping": cpus_text(self.housekeeping),
            "reserved": cpus_text(self.reserved),
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
            "cells": nodes_text(self.cells),
            "vcpupin": _pins_dict(self.vcpupin),
            "emulatorpin": cpus_text(self.emulatorpin),
            "nodeset": nodes_text(self.nodeset),
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


def demand_digest(vms: Iterable[VmDemand]) -> str:
    """A stable sha256 (hex) of the demands, by name: it changes when any VM's vCPUs, memory,
    cells, pins, locked or dedicated flag change, or a VM comes or goes."""
    rows = sorted((vm.as_dict() for vm in vms), key=lambda row: row["name"])
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
