"""What the planner is given: the stored inventory of a host as :class:`~balancing.planner.VmDemand`
rows, and its :class:`~balancing.models.BalancingPolicy` as a :class:`~balancing.planner.Policy`.

Read from the database only (the last sync), never from libvirt: a plan is computed, reviewed
and checked for staleness against the same stored inventory. Stored strings came from the
hypervisor and may be anything: cpusets and nodesets that do not parse count as empty.
"""

from __future__ import annotations

from django.db.models import Prefetch

from balancing.models import BalancingPolicy
from balancing.planner import Policy, VmDemand
from changes.kinds.hotadd import HotAddPolicy
from hosts.models import Host
from hosts.selectors import safe_cpuset, safe_nodeset
from vms.models import VcpuPin, VirtualMachine

__all__ = [
    "balanced_vms",
    "demand_of",
    "demands_for_host",
    "demands_for_hosts",
    "hotadd_policy_for_host",
    "policy_for_host",
]


def balanced_vms(host: Host) -> list[VirtualMachine]:
    """The VMs a plan places: present on the host and running (they have a live vCPU count;
    a paused VM still holds its CPUs and memory), with their vCPU rows; two queries."""
    return list(
        VirtualMachine.objects.present()
        .filter(host=host, vcpu_current_live__isnull=False)
        .order_by("name", "uuid")
        .prefetch_related(Prefetch("vcpus", queryset=VcpuPin.objects.order_by("vcpu")))
    )


def demand_of(vm: VirtualMachine) -> VmDemand:
    """One VM row as the planner sees it (uses the prefetched vCPU rows only)."""
    vcpupin = {}
    for pin in vm.vcpus.all():
        if not pin.online:
            continue
        cpus = safe_cpuset(pin.pin_live)
        if cpus:
            vcpupin[pin.vcpu] = cpus
    return VmDemand(
        name=vm.name,
        vcpus=vm.vcpu_current_live or 0,
        memory_kib=vm.memory_kib,
        cells=safe_nodeset(vm.cells),
        memory_cells=safe_nodeset(vm.memory_cells),
        vcpupin=vcpupin,
        emulatorpin=safe_cpuset(vm.emulatorpin) or None,
        locked=vm.balancing_locked,
        dedicated=vm.dedicated,
    )


def demands_for_host(host: Host) -> list[VmDemand]:
    """Every running VM of *host* as a :class:`VmDemand`, by name; two queries."""
    return [demand_of(vm) for vm in balanced_vms(host)]


def demands_for_hosts(hosts: list[Host]) -> dict[int, list[VmDemand]]:
    """:func:`demands_for_host` of every host of *hosts* at once (host id -> its demands, each
    list by name as there, the same demands): two queries for any number of hosts (the
    scheduler's sweep), read as rows, not model instances (a fleet has tens of thousands of
    VMs and vCPUs)."""
    ids = [host.pk for host in hosts]
    vms = (
        VirtualMachine.objects.present()
        .filter(host__in=ids, vcpu_current_live__isnull=False)
        .order_by("host_id", "name", "uuid")
    )
    pins: dict[int, dict[int, frozenset[int]]] = {}
    for vm_id, vcpu, cpuset in (
        VcpuPin.objects.filter(vm__in=vms.values("pk"), online=True)
        .exclude(pin_live="")
        .values_list("vm_id", "vcpu", "pin_live")
    ):
        cpus = safe_cpuset(cpuset)
        if cpus:
            pins.setdefault(vm_id, {})[vcpu] = cpus
    out: dict[int, list[VmDemand]] = {pk: [] for pk in ids}
    for row in vms.values_list(*_DEMAND_FIELDS, named=True):
        out[row.host_id].append(
            VmDemand(
                name=row.name,
                vcpus=row.vcpu_current_live or 0,
                memory_kib=row.memory_kib,
                cells=safe_nodeset(row.cells),
                memory_cells=safe_nodeset(row.memory_cells),
                vcpupin=dict(sorted(pins.get(row.pk, {}).items())),
                emulatorpin=safe_cpuset(row.emulatorpin) or None,
                locked=row.balancing_locked,
                dedicated=row.dedicated,
            )
        )
    return out


#: What :func:`demands_for_hosts` reads of a VM row (what :func:`demand_of` uses).
_DEMAND_FIELDS = (
    "pk",
    "host_id",
    "name",
    "vcpu_current_live",
    "memory_kib",
    "cells",
    "memory_cells",
    "emulatorpin",
    "balancing_locked",
    "dedicated",
)


def policy_for_host(host: Host) -> Policy:
    """The host's balancing policy as the planner's :class:`Policy` (defaults when it has none).

    Stored cpusets were validated by the policy form, but the host's CPUs may have changed
    since: a cpuset that no longer parses counts as empty rather than failing the plan.
    """
    try:
        row = BalancingPolicy.objects.get(host=host)
    except BalancingPolicy.DoesNotExist:
        return Policy()
    return policy_from_row(row)


def policy_from_row(row: BalancingPolicy) -> Policy:
    return Policy(
        strategy=row.strategy if row.strategy in ("spread", "pack") else "spread",
        cpu_overcommit=max(1.0, float(row.cpu_overcommit)),
        emulator=row.emulator if row.emulator in ("cell", "housekeeping") else "cell",
        housekeeping=safe_cpuset(row.housekeeping),
        reserved=safe_cpuset(row.reserved),
        whole_cores=bool(row.whole_cores),
        memory_reserve_kib=int(row.memory_reserve_mib) * 1024,
    )


def hotadd_policy_for_host(host: Host) -> HotAddPolicy:
    """What a vCPU hot-add follows of *host*'s policy (one query; a new policy's defaults when
    it has none), as :func:`policy_for_host` reads it. Registered with
    :mod:`changes.kinds.policy_hook` when the app is ready."""
    policy = policy_for_host(host)
    return HotAddPolicy(
        reserved=policy.reserved,
        housekeeping=policy.housekeeping,
        emulator=policy.emulator,
        whole_cores=policy.whole_cores,
        cpu_overcommit=policy.cpu_overcommit,
    )
