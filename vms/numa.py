"""What a VM's vCPU pins and memory binding mean on its host's NUMA topology (pure functions).

No Django, no libvirt: the sync computes these once per VM and stores the results in columns
so that lists can filter on "pinned", "cross-node" and "drift" in SQL, and the planner and the
pages can call the same functions on stored data.

Vocabulary, as the seed uses it:

* *affinity* of a vCPU: the host CPUs it may run on (``virsh vcpuinfo``'s "CPU Affinity"); an
  unpinned vCPU's affinity is every host CPU.
* *pinned*: every online vCPU is restricted to fewer than all host CPUs, by its own
  ``<vcpupin>`` or by the domain's ``<vcpu cpuset>``; *partly*: some are; *unpinned*: none.
* *cross-node*: its vCPUs may run on more than one cell, or its memory is bound
  (``<numatune>``) to other cells than those its vCPUs run on — remote memory either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from numaportal.virt.cpuset import format_cpuset, format_nodeset
from numaportal.virt.domain import DomainTuning
from numaportal.virt.topology import HostTopology

__all__ = [
    "PinningState",
    "is_cross_node",
    "pinning_state",
    "tuning_drift",
    "vm_cells",
]

PinningState = Literal["pinned", "partly", "unpinned"]


def vm_cells(
    topology: HostTopology, affinity: Mapping[int, frozenset[int] | None]
) -> frozenset[int]:
    """Cells the vCPUs may run on, from their effective affinity (vCPU -> host CPUs).

    ``None`` (or an empty set) for a vCPU means "anywhere": every cell that has CPUs. CPUs the
    topology does not know (a stale pin after a CPU went offline, the test driver's cpumaps)
    are ignored rather than guessed.
    """
    anywhere = frozenset(cell.id for cell in topology.cells if cell.cpus)
    known = topology.cpu_ids
    cells: set[int] = set()
    for cpus in affinity.values():
        if not cpus:
            cells |= anywhere
            continue
        cells |= topology.cells_of(cpus & known)
    return frozenset(cells)


def _restricts(cpus: frozenset[int] | None, host_cpus: frozenset[int]) -> bool:
    """A cpuset restricts a vCPU when it leaves out at least one host CPU.

    With no known host CPUs (a host without NUMA topology) any explicit set counts.
    """
    if not cpus:
        return False
    if not host_cpus:
        return True
    return not cpus >= host_cpus


def pinning_state(
    topology: HostTopology,
    vcpus: Iterable[int],
    pins: Mapping[int, frozenset[int]],
    vcpu_cpuset: frozenset[int] | None = None,
) -> PinningState:
    """ "pinned" / "partly" / "unpinned" for the online vCPUs *vcpus*.

    *pins* are the explicit ``<vcpupin>`` entries, *vcpu_cpuset* the domain's ``<vcpu cpuset>``
    (the default affinity of vCPUs without their own pin). A pin to every host CPU is no pin.
    A VM with no online vCPU to judge is "unpinned".
    """
    host_cpus = topology.cpu_ids
    default_restricts = _restricts(vcpu_cpuset, host_cpus)
    verdicts = [
        _restricts(pins[vcpu], host_cpus) if vcpu in pins else default_restricts for vcpu in vcpus
    ]
    if verdicts and all(verdicts):
        return "pinned"
    if any(verdicts):
        return "partly"
    return "unpinned"


def is_cross_node(
    topology: HostTopology,
    cpu_cells: frozenset[int],
    numatune_mode: str | None = None,
    numatune_nodeset: frozenset[int] | None = None,
) -> bool:
    """True when the VM's vCPUs may run on more than one cell, or its memory binding
    (``<numatune><memory mode= nodeset=>``) names other cells than its vCPUs' cells.

    *cpu_cells* is :func:`vm_cells`' result. A host with a single cell is never cross-node:
    all its memory is local. Without a nodeset there is no binding to disagree with (the
    kernel allocates locally to wherever the vCPU runs); the mode only matters through its
    nodeset (strict, preferred, interleave or restrictive on other cells are all remote).
    """
    del numatune_mode  # every mode with a nodeset binds memory; see the docstring
    if len(topology.cells) <= 1:
        return False
    if len(cpu_cells) > 1:
        return True
    return bool(numatune_nodeset) and bool(cpu_cells) and numatune_nodeset != cpu_cells


def _cpus(cpus: frozenset[int] | None) -> str:
    if cpus is None:
        return "none"
    return format_cpuset(cpus) if cpus else "no CPUs"


def _pin(cpus: frozenset[int] | None, where: str) -> str:
    return f"not pinned {where}" if cpus is None else f"pinned to {_cpus(cpus)} {where}"


def _numatune(mode: str | None, nodeset: frozenset[int] | None, placement: str | None) -> str:
    if mode is None and nodeset is None and placement is None:
        return "none"
    parts = [mode or "strict"]
    if nodeset:
        parts.append(format_nodeset(nodeset))
    if placement == "auto":
        parts.append("(placement auto)")
    return " ".join(parts)


def tuning_drift(live: DomainTuning, config: DomainTuning) -> list[str]:
    """What differs between the running definition and the persistent one, in words.

    Each entry names one difference the operator would lose at the next shutdown (or gain at
    the next boot), e.g. ``"vCPU 0 pinned to 1 live, 0-1 in config"``. Compared: vCPU counts,
    ``<vcpu cpuset>``, each ``<vcpupin>``, ``<emulatorpin>`` and ``<numatune>``. Empty when they
    agree.
    """
    drift: list[str] = []
    if live.vcpu_current != config.vcpu_current:
        drift.append(f"{live.vcpu_current} vCPUs live, {config.vcpu_current} in config")
    if live.vcpu_max != config.vcpu_max:
        drift.append(f"maximum {live.vcpu_max} vCPUs live, {config.vcpu_max} in config")
    if live.vcpu_cpuset != config.vcpu_cpuset:
        drift.append(
            f"default vCPU cpuset {_cpus(live.vcpu_cpuset)} live, "
            f"{_cpus(config.vcpu_cpuset)} in config"
        )
    for vcpu in sorted(live.vcpupin.keys() | config.vcpupin.keys()):
        live_pin, config_pin = live.vcpupin.get(vcpu), config.vcpupin.get(vcpu)
        if live_pin == config_pin:
            continue
        if live_pin is not None and config_pin is not None:
            drift.append(
                f"vCPU {vcpu} pinned to {_cpus(live_pin)} live, {_cpus(config_pin)} in config"
            )
        else:
            drift.append(f"vCPU {vcpu} {_pin(live_pin, 'live')}, {_pin(config_pin, 'in config')}")
    if live.emulatorpin != config.emulatorpin:
        if live.emulatorpin is not None and config.emulatorpin is not None:
            drift.append(
                f"emulator pinned to {_cpus(live.emulatorpin)} live, "
                f"{_cpus(config.emulatorpin)} in config"
            )
        else:
            live_text = _pin(live.emulatorpin, "live")
            drift.append(f"emulator {live_text}, {_pin(config.emulatorpin, 'in config')}")
    # With placement='auto' numad picks the nodeset at start: the live XML names it, the
    # config cannot. That is not drift; a different mode or placement still is.
    live_nodeset = live.numatune_nodeset
    if config.numatune_placement == "auto" and config.numatune_nodeset is None:
        live_nodeset = None
    if (live.numatune_mode, live_nodeset, live.numatune_placement) != (
        config.numatune_mode,
        config.numatune_nodeset,
        config.numatune_placement,
    ):
        drift.append(
            f"numatune {_numatune(live.numatune_mode, live_nodeset, live.numatune_placement)} "
            "live, "
            f"{_numatune(config.numatune_mode, config.numatune_nodeset, config.numatune_placement)}"
            " in config"
        )
    if live.numatune_memnodes != config.numatune_memnodes:
        drift.append("numatune memnode bindings differ between live and config")
    return drift


def guest_online_commands(vcpus: Iterable[int], online: bool = True) -> list[str]:
    """What to run inside the guest to online (or offline) vCPUs when no guest agent answers:
    the seed's own ``echo 1 > /sys/devices/system/cpu/cpuN/online``."""
    value = 1 if online else 0
    return [f"echo {value} > /sys/devices/system/cpu/cpu{n}/online" for n in sorted(vcpus)]
