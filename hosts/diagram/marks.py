"""What is on each physical CPU: pinned vCPUs, floating VMs, emulator pins, over-commit.

Pure bookkeeping over :class:`DiagramVm` inputs; the drawing modules only read the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hosts.diagram.model import DiagramVm
from numaportal.virt.topology import HostTopology


@dataclass(frozen=True)
class VcpuRef:
    """One vCPU of one VM, as seen from a physical CPU."""

    vm: DiagramVm
    vcpu: int
    #: Its affinity (for a pinned vCPU: its pin).
    cpuset: frozenset[int]
    last_ran_here: bool


@dataclass(frozen=True)
class CpuMarks:
    """Everything the diagram draws on one hardware thread."""

    cpu_id: int
    #: vCPUs with an explicit pin that includes this CPU (exclusive or a range).
    pinned: tuple[VcpuRef, ...] = ()
    #: VMs with an unpinned vCPU whose affinity includes this CPU.
    floating: tuple[DiagramVm, ...] = ()
    #: VMs whose emulator threads are pinned to a set including this CPU.
    emulator: tuple[DiagramVm, ...] = ()
    #: vCPUs (pinned or not) that last ran on this CPU.
    last_ran: tuple[VcpuRef, ...] = ()
    #: More pinned vCPUs compete for this thread than there are threads for them.
    overcommitted: bool = False


def vm_order(vm: DiagramVm) -> tuple[str, str]:
    return (vm.name.casefold(), vm.uuid)


def _augment(start: int, pins: list[tuple[int, ...]], owner: dict[int, int]) -> bool:
    """Kuhn's augmenting path from vCPU *start*, iteratively (no recursion limit on big hosts)."""
    seen: set[int] = set()
    stack = [(start, iter(pins[start]))]
    path: list[int] = []  # path[i] is the CPU stack[i] would take
    while stack:
        _, candidates = stack[-1]
        for cpu in candidates:
            if cpu in seen:
                continue
            seen.add(cpu)
            path.append(cpu)
            if cpu not in owner:
                for (vcpu, _), taken in zip(stack, path, strict=True):
                    owner[taken] = vcpu
                return True
            stack.append((owner[cpu], iter(pins[owner[cpu]])))
            break
        else:
            stack.pop()
            if path:
                path.pop()
    return False


def _overloaded_cpus(pins: list[frozenset[int]]) -> set[int]:
    """CPUs in some set T pinned by more vCPUs (pins within T) than T has threads.

    With exclusive pins this is simply "two or more vCPUs pinned to this thread"; with range
    pins it is Hall's condition: two vCPUs pinned to 22-23 share two threads (fine), three do
    not. A maximum matching of vCPUs to CPUs, then every CPU reachable by alternating paths
    from an unmatched vCPU, is exactly the union of the violating sets.
    """
    lists = [tuple(sorted(p)) for p in pins]
    owner: dict[int, int] = {}
    unmatched = [v for v in range(len(lists)) if not _augment(v, lists, owner)]
    overloaded: set[int] = set()
    todo = list(unmatched)
    visited = set(unmatched)
    while todo:
        vcpu = todo.pop()
        for cpu in lists[vcpu]:
            if cpu in overloaded:
                continue
            overloaded.add(cpu)
            other = owner[cpu]  # every reachable CPU is matched, or the matching wasn't maximum
            if other not in visited:
                visited.add(other)
                todo.append(other)
    return overloaded


def cpu_marks(topology: HostTopology, vms: Iterable[DiagramVm]) -> dict[int, CpuMarks]:
    """Per physical CPU of *topology*: pinned vCPUs, floating VMs, emulator pins, last runs.

    Every host CPU gets an entry (empty marks when nothing is there). CPUs a VM names that
    are not on the host (stale data) are ignored. Entries are ordered by VM name, then vCPU.
    """
    host_cpus = topology.cpu_ids
    pinned: dict[int, list[VcpuRef]] = {cpu: [] for cpu in host_cpus}
    floating: dict[int, list[DiagramVm]] = {cpu: [] for cpu in host_cpus}
    emulator: dict[int, list[DiagramVm]] = {cpu: [] for cpu in host_cpus}
    last_ran: dict[int, list[VcpuRef]] = {cpu: [] for cpu in host_cpus}
    pin_sets: list[frozenset[int]] = []

    for vm in sorted(vms, key=vm_order):
        floats_on: set[int] = set()
        for vcpu in sorted(vm.vcpu_affinity):
            cpuset = vm.vcpu_affinity[vcpu] & host_cpus
            last = vm.last_cpu.get(vcpu)
            is_pinned = vcpu in vm.pinned_vcpus
            if is_pinned and cpuset:
                pin_sets.append(cpuset)
            for cpu in sorted(cpuset):
                if is_pinned:
                    pinned[cpu].append(VcpuRef(vm, vcpu, cpuset, last == cpu))
                else:
                    floats_on.add(cpu)
            if last is not None and last in host_cpus:
                last_ran[last].append(VcpuRef(vm, vcpu, cpuset, True))
        for cpu in floats_on:
            floating[cpu].append(vm)
        for cpu in (vm.emulatorpin or frozenset()) & host_cpus:
            emulator[cpu].append(vm)

    overloaded = _overloaded_cpus(pin_sets)
    return {
        cpu: CpuMarks(
            cpu_id=cpu,
            pinned=tuple(pinned[cpu]),
            floating=tuple(floating[cpu]),
            emulator=tuple(emulator[cpu]),
            last_ran=tuple(last_ran[cpu]),
            overcommitted=cpu in overloaded,
        )
        for cpu in sorted(host_cpus)
    }
