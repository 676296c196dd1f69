"""Where hot-added vCPUs go, decided when a ``setvcpus`` hot-add is validated. Pure Python: no
Django, no libvirt, so hypothesis can run it over the capabilities fixtures.

A vCPU hot-added live to a running VM floats over every CPU of the host unless it is pinned. This
module keeps the VM's placement, following the host's balancing policy (the capacity model of
:mod:`balancing.planner`, reduced to what a hot-add needs: :class:`HotAddPolicy`):

- **pinned** VM (every live vCPU has a vcpupin) or **cell-bound** VM (numatune ``strict``,
  ``restrictive`` or ``preferred`` with a nodeset, no vCPU pinned): the new vCPUs stay in its
  *home cells*, the cells of its current pins, or its nodeset;
- a **dedicated** VM gets one CPU of its own per new vCPU in its home cells: not reserved, not
  housekeeping (when emulator threads go there), not held by a dedicated VM's vCPU (another's, or
  its own). With ``whole_cores``: first the idle SMT siblings of cores it already holds, then the
  first thread of a whole free core (all its siblings free, the rest left for its next vCPUs);
- a **shared** VM gets the shared pool of its home cells (their usable CPUs less those held by
  dedicated VMs). A pinned shared VM gets the union of its vCPUs' pins *within* that pool: it
  is what "keeps its placement" means (an operator who kept a VM on part of a cell keeps it
  there, a new vCPU is a peer of the others), while the intersection keeps the policy (a pin
  older than a dedicated VM, a reserved CPU or the policy itself never spreads to the new
  vCPU). When nothing of the union is left in the pool, the whole pool of the home cells is
  used and the words say why. The shared vCPUs pinned within the home cells (other VMs' and its
  own, from the stored pins; floating vCPUs are not on any pool) plus the new ones may not
  exceed ``cpu_overcommit`` x the pool size;
- any other VM (unpinned and not bound to cells, partly pinned, bound to CPU-less cells) keeps
  the old behaviour: the new vCPU floats, and the words say so.

A dedicated VM holds the CPUs its vCPUs are pinned to one each (with ``whole_cores``, their SMT
siblings too); a dedicated VM's vCPU pinned to several CPUs counts as shared load, as the
planner counts it. Only running VMs' online vCPUs count (their live pins), as for a plan.

:func:`place` answers one :class:`NewVcpu` per new vCPU or raises :class:`NoRoom` with the
refusal in the operator's words; :func:`as_params` is what the change record keeps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from numaportal.virt.cpuset import format_cpuset, format_nodeset
from numaportal.virt.topology import HostTopology

__all__ = [
    "CELL_BOUND_MODES",
    "FLOATS",
    "FLOATS_PARTLY",
    "HostPins",
    "HotAddPolicy",
    "HotAddVm",
    "NewVcpu",
    "NoRoom",
    "PinnedVcpu",
    "as_params",
    "cpus_word",
    "place",
]

#: numatune modes that bind a VM's memory to its nodeset (interleave spreads it on purpose).
CELL_BOUND_MODES = ("strict", "restrictive", "preferred")


#: Where the new vCPUs of a VM neither pinned nor bound to cells go (the old behaviour).
FLOATS = (
    "not pinned: its vCPUs are not pinned and its memory is not bound to cells, so it floats "
    "over every CPU of the host like them"
)
FLOATS_PARTLY = (
    "not pinned: only some of its vCPUs are pinned, so it floats over every CPU of the host "
    "like the unpinned ones"
)


class NoRoom(ValueError):
    """The home cells have no room for a new vCPU under the policy; the message says why."""


@dataclass(frozen=True)
class HotAddPolicy:
    """What of the host's balancing policy a hot-add follows. The defaults are those of a new
    ``balancing.models.BalancingPolicy`` (a host without one), which balancing registers through
    :mod:`changes.kinds.policy_hook`."""

    reserved: frozenset[int] = frozenset()
    housekeeping: frozenset[int] = frozenset()
    #: "cell" or "housekeeping": where emulator threads go (housekeeping CPUs are not for vCPUs).
    emulator: str = "cell"
    whole_cores: bool = True
    cpu_overcommit: float = 1.0

    @property
    def blocked(self) -> frozenset[int]:
        """CPUs never given to a vCPU: reserved, and housekeeping when emulators go there."""
        if self.emulator == "housekeeping":
            return self.reserved | self.housekeeping
        return self.reserved

    def limit(self, pool: int) -> int:
        """Shared vCPUs allowed on a shared pool of *pool* CPUs (the planner's rounding)."""
        return math.floor(self.cpu_overcommit * max(0, pool) + 1e-9)


@dataclass(frozen=True)
class PinnedVcpu:
    """One online vCPU of another running VM of the host, with its stored live pin."""

    vm: str
    vcpu: int
    cpus: frozenset[int]
    dedicated: bool = False


@dataclass(frozen=True)
class HostPins:
    """What the database says around a hot-add: the policy, the VM's own live pins, the pinned
    vCPUs of the host's other running VMs. The default is an empty host under the default
    policy."""

    policy: HotAddPolicy = field(default_factory=HotAddPolicy)
    #: The VM's own live pins, vCPU -> CPUs (pinned vCPUs only).
    own: Mapping[int, frozenset[int]] = field(default_factory=dict)
    others: tuple[PinnedVcpu, ...] = ()


@dataclass(frozen=True)
class HotAddVm:
    """The VM a vCPU is hot-added to, as its row says."""

    name: str
    #: Live vCPUs now (the new ones are numbered from here).
    current: int
    dedicated: bool = False
    numatune_mode: str = ""
    nodeset: frozenset[int] = frozenset()


@dataclass(frozen=True)
class NewVcpu:
    """Where one new vCPU goes: its CPUs (None: it floats) and why, in words."""

    vcpu: int
    cpus: frozenset[int] | None
    why: str


def cpus_word(cpus: Iterable[int]) -> str:
    """ "CPU 3" or "CPUs 2-3"."""
    cpus = frozenset(cpus)
    return f"CPU{'s' if len(cpus) > 1 else ''} {format_cpuset(cpus)}"


def _cells_word(cells: Iterable[int]) -> str:
    cells = frozenset(cells)
    return f"cell{'s' if len(cells) > 1 else ''} {format_nodeset(cells)}"


def _are(cpus: Iterable[int], what: str) -> str:
    """ "CPU 2 is <what>" / "CPUs 2-3 are <what>"."""
    cpus = frozenset(cpus)
    return f"{cpus_word(cpus)} {'are' if len(cpus) > 1 else 'is'} {what}"


def as_params(placed: Iterable[NewVcpu]) -> dict[str, dict[str, str]]:
    """What the change record keeps: ``vcpupin`` (vCPU -> cpuset, the pinned ones) and
    ``placement`` (vCPU -> the words, every new vCPU); empty for no new vCPU."""
    placed = list(placed)
    if not placed:
        return {}
    out: dict[str, dict[str, str]] = {}
    pins = {str(n.vcpu): format_cpuset(n.cpus) for n in placed if n.cpus}
    if pins:
        out["vcpupin"] = pins
    out["placement"] = {str(n.vcpu): n.why for n in placed}
    return out


# --- the host as the capacity model sees it ---------------------------------------------------


class _Host:
    """The look-ups :func:`place` needs, once: cells, cores, what dedicated VMs hold."""

    def __init__(self, topology: HostTopology, pins: HostPins) -> None:
        self.topology = topology
        self.policy = pins.policy
        self.cell_of = {cpu.id: cell.id for cell in topology.cells for cpu in cell.cpus}
        self.siblings = {
            cpu.id: frozenset(cpu.siblings) & frozenset(self.cell_of)
            for cell in topology.cells
            for cpu in cell.cpus
        }
        self.cell_cpus = {cell.id: cell.cpu_ids for cell in topology.cells}
        #: CPU -> the dedicated VMs (other than the one hot-added to) holding it.
        self.held: dict[int, set[str]] = {}
        for pin in pins.others:
            if not pin.dedicated or len(pin.cpus) != 1:
                continue
            (cpu,) = pin.cpus
            if cpu not in self.cell_of:
                continue
            cpus = self.siblings[cpu] if self.policy.whole_cores else frozenset({cpu})
            for held in cpus:
                self.held.setdefault(held, set()).add(pin.vm)
        #: The other VMs' shared vCPUs: (their cells, VM name).
        self.shared = [
            (self.cells(pin.cpus), pin.vm)
            for pin in pins.others
            if not (pin.dedicated and len(pin.cpus) == 1) and self.cells(pin.cpus)
        ]

    def cells(self, cpus: Iterable[int]) -> frozenset[int]:
        """The cells of the CPUs the host has (unknown CPUs ignored)."""
        return frozenset(self.cell_of[c] for c in cpus if c in self.cell_of)

    def cpus_of(self, cells: Iterable[int]) -> frozenset[int]:
        return frozenset().union(*(self.cell_cpus.get(c, frozenset()) for c in cells))

    def held_words(self, cpus: frozenset[int]) -> str:
        held = frozenset(self.held) & cpus
        names = sorted({name for cpu in held for name in self.held[cpu]})
        vms = f"dedicated VM{'s' if len(names) > 1 else ''} {', '.join(names)}"
        return _are(held, f"held by {vms}")

    def blocked_words(self, cpus: frozenset[int]) -> list[str]:
        policy, parts = self.policy, []
        if cpus & policy.reserved:
            parts.append(_are(cpus & policy.reserved, "reserved"))
        if policy.emulator == "housekeeping" and cpus & (policy.housekeeping - policy.reserved):
            parts.append(_are(cpus & (policy.housekeeping - policy.reserved), "for housekeeping"))
        return parts


# --- where the VM lives -------------------------------------------------------------------------


def _home(host: _Host, vm: HotAddVm, own: Mapping[int, frozenset[int]]) -> tuple[str, frozenset]:
    """("pinned" | "cell-bound", its home cells), or ("", why the new vCPUs float)."""
    mine = {v: own[v] for v in range(vm.current) if own.get(v)}
    if vm.current > 0 and len(mine) == vm.current:
        cells = host.cells(frozenset().union(*mine.values()))
        if not cells:
            raise NoRoom(
                f"the vCPUs of {vm.name} are pinned to CPUs this host does not have (as last "
                "synced): sync the host first"
            )
        return "pinned", cells
    if mine:
        return "", FLOATS_PARTLY
    if vm.numatune_mode in CELL_BOUND_MODES and vm.nodeset:
        with_cpus = frozenset(c for c in vm.nodeset if host.cell_cpus.get(c))
        if with_cpus:
            return "cell-bound", with_cpus
        return "", (
            f"not pinned: its memory is bound to {_cells_word(vm.nodeset)}, which "
            f"{'have' if len(vm.nodeset) > 1 else 'has'} no CPUs, so it floats over every CPU "
            "of the host"
        )
    return "", FLOATS


def place(topology: HostTopology, vm: HotAddVm, count: int, pins: HostPins) -> tuple[NewVcpu, ...]:
    """Where each vCPU hot-added to *vm* (from ``vm.current`` to *count* - 1) goes.

    :class:`NoRoom` when its home cells have no room for them under the policy.
    """
    added = list(range(max(0, vm.current), count))
    if not added:
        return ()
    host = _Host(topology, pins)
    how, home = _home(host, vm, pins.own)
    if not how:
        return tuple(NewVcpu(v, None, home) for v in added)
    own = {v: pins.own[v] for v in range(vm.current) if pins.own.get(v)}
    if vm.dedicated:
        return _dedicated(host, vm, added, home, own)
    return _shared(host, vm, added, home, own, how)


def _cell_order(host: _Host, home: frozenset[int], own: Mapping[int, frozenset[int]]) -> list[int]:
    """Home cells with most of the VM's vCPUs first (then by id)."""
    weight = dict.fromkeys(home, 0)
    for cpus in own.values():
        for c in host.cells(cpus) & home:
            weight[c] += 1
    return sorted(home, key=lambda c: (-weight[c], c))


def _dedicated(
    host: _Host,
    vm: HotAddVm,
    added: list[int],
    home: frozenset[int],
    own: Mapping[int, frozenset[int]],
) -> tuple[NewVcpu, ...]:
    policy = host.policy
    cells = _cell_order(host, home, own)
    mine = {next(iter(cpus)) for cpus in own.values() if len(cpus) == 1}
    out = []
    for vcpu in added:
        taken = policy.blocked | frozenset(host.held) | mine
        choice = _free_cpu(host, cells, mine, taken)
        if choice is None:
            raise NoRoom(_no_core(host, vm, vcpu, home, mine))
        cpu, why = choice
        mine.add(cpu)
        out.append(NewVcpu(vcpu, frozenset({cpu}), why))
    return tuple(out)


def _free_cpu(
    host: _Host, cells: list[int], mine: set[int], taken: frozenset[int]
) -> tuple[int, str] | None:
    """One CPU for a dedicated vCPU and why, or None."""
    policy = host.policy
    if not policy.whole_cores:
        for c in cells:
            for cpu in sorted(host.cell_cpus[c] - taken):
                return cpu, f"dedicated, CPU {cpu} of cell {c}"
        return None
    for c in cells:  # an idle sibling of a core it holds
        for cpu in sorted(mine):
            if host.cell_of.get(cpu) != c:
                continue
            # A core with a reserved (or another dedicated VM's) thread is not a whole core of
            # its own, even when its own vCPU sits on it (pinned before the policy said so).
            if host.siblings[cpu] & (policy.blocked | frozenset(host.held)):
                continue
            idle = sorted(host.siblings[cpu] - taken)
            if idle:
                core = format_cpuset(host.siblings[cpu])
                return idle[
                    0
                ], f"dedicated, idle sibling on core {core} of cell {c}, which it holds"
    for c in cells:  # a whole free core
        cores = sorted({tuple(sorted(host.siblings[cpu])) for cpu in host.cell_cpus[c]})
        for core in cores:
            if not set(core) & taken:
                return core[0], f"dedicated, whole core {format_cpuset(core)} of cell {c}"
    return None


def _no_core(host: _Host, vm: HotAddVm, vcpu: int, home: frozenset[int], mine: set[int]) -> str:
    cpus = host.cpus_of(home)
    parts = []
    if frozenset(host.held) & cpus:
        parts.append(host.held_words(cpus))
    if mine & cpus:
        parts.append(_are(mine & cpus, f"held by {vm.name} itself"))
    parts += host.blocked_words(cpus)
    if host.policy.whole_cores:
        what, free = "no free core", "free a core"
        if not parts:
            parts.append("no core has all its threads free")
    else:
        what, free = "no free CPU", "free a CPU"
    return (
        f"{_cells_word(home)} {'have' if len(home) > 1 else 'has'} {what} for vCPU {vcpu} of "
        f"dedicated VM {vm.name}: {'; '.join(parts)}; {free}, or clear 'dedicated' to use the "
        "shared pool"
    )


def _shared(
    host: _Host,
    vm: HotAddVm,
    added: list[int],
    home: frozenset[int],
    own: Mapping[int, frozenset[int]],
    how: str,
) -> tuple[NewVcpu, ...]:
    policy = host.policy
    where = _cells_word(home)
    cpus = host.cpus_of(home)
    pool = cpus - policy.blocked - frozenset(host.held)
    new = f"vCPU{'s' if len(added) > 1 else ''} {format_cpuset(added)}"
    if not pool:
        parts = ([host.held_words(cpus)] if frozenset(host.held) & cpus else []) + (
            host.blocked_words(cpus)
        )
        raise NoRoom(
            f"{where} {'have' if len(home) > 1 else 'has'} no shared pool for {new} of "
            f"{vm.name}: {'; '.join(parts)}; free CPUs there, or set 'dedicated' on it"
        )
    others = sum(1 for cells, _ in host.shared if cells <= home)
    mine = sum(1 for p in own.values() if host.cells(p) and host.cells(p) <= home)
    total, limit = others + mine + len(added), policy.limit(len(pool))
    if total > limit:
        raise NoRoom(
            f"the shared pool of {where} ({cpus_word(pool)}) would hold {total} shared vCPUs: "
            f"{others} of other VMs, {mine} of {vm.name} and {len(added)} new; CPU over-commit "
            f"{policy.cpu_overcommit:g} x {len(pool)} CPU{'s' if len(pool) > 1 else ''} allows "
            f"{limit}: raise the over-commit in the host's balancing policy, or move VMs off "
            f"{where}"
        )
    target, why = pool, f"shared pool of {where}"
    if how == "pinned":
        theirs = frozenset().union(*own.values())
        within = theirs & pool
        if within and within != pool:
            target, why = within, f"its other vCPUs' CPUs in the shared pool of {where}"
        elif not within:
            why += f" (its other vCPUs' {cpus_word(theirs)} are not in it)"
    else:
        why += ", where its memory is bound"
    return tuple(NewVcpu(v, target, why) for v in added)
