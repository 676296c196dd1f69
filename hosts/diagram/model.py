"""What the topology diagram is drawn from: the VMs on the host and each cell's memory.

hosts.selectors fills these in for the host page, balancing.selectors for a plan's before and
after; the rest of the package only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DiagramVm:
    """A VM as the diagram draws it: its vCPUs, emulator threads and memory, as last seen."""

    name: str
    uuid: str
    url: str
    #: Effective live affinity of each online vCPU (``virsh vcpuinfo``'s "CPU Affinity").
    vcpu_affinity: dict[int, frozenset[int]]
    #: vCPUs with an explicit ``<vcpupin>`` (the others float within their affinity).
    pinned_vcpus: frozenset[int] = frozenset()
    #: ``virsh emulatorpin``; None when the emulator is not pinned.
    emulatorpin: frozenset[int] | None = None
    #: vCPU -> physical CPU it last ran on (``virsh vcpuinfo``'s "CPU").
    last_cpu: dict[int, int] = field(default_factory=dict)
    memory_cells: frozenset[int] = frozenset()
    memory_kib: int = 0
    cross_node: bool = False


@dataclass(frozen=True, slots=True)
class CellMemory:
    """``virsh freecell``: a cell's memory; free is None when the host did not say."""

    cell_id: int
    total_kib: int
    free_kib: int | None
