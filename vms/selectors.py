"""Read-side queries that need VM rows: the hosts dashboard's VM counts, a host's VMs, the
VMs as the topology diagram draws them, `virsh vcpuinfo` rows, the VM list.

Every function here issues a fixed number of SQL queries whatever the number of hosts or VMs
(annotations, subqueries and prefetches, no per-row lookups), so that a dashboard of 200 hosts
or a host with 500 VMs costs the same handful of queries as a lab with one.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import (
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.urls import reverse

from hosts.diagram import DiagramVm
from hosts.models import Cell, Host, PhysicalCpu
from hosts.selectors import affinity_strip, cell_usage, safe_cpuset, safe_nodeset
from numaportal.virt.cpuset import format_cpuset
from vms.models import VcpuPin, VirtualMachine, VmCellMemory

__all__ = [
    "VcpuRow",
    "dashboard_rows",
    "diagram_vms",
    "fleet_drift_totals",
    "host_vm_filter",
    "host_vm_rows",
    "vcpu_affinity",
    "vcpuinfo_rows",
    "vm_with_vcpus",
    "with_cell_memory",
]


# --- dashboard --------------------------------------------------------------------------------


def _count(model, **filters) -> Coalesce:
    """A correlated COUNT(*) subquery; joining two many-sides in one query would multiply."""
    subquery = (
        model.objects.filter(host=OuterRef("pk"), **filters)
        .order_by()
        .values("host")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(subquery, output_field=IntegerField()), 0)


def dashboard_rows(hosts: QuerySet[Host] | None = None) -> QuerySet[Host]:
    """Active hosts (of *hosts*, e.g. a filter's) by name with their counts and cells, lazily:
    the hosts list pages through it, so the counts are computed for one page of hosts only
    (a COUNT, then two queries for the page). Pass the page's hosts to :func:`with_cell_memory`.
    """
    hosts = Host.objects.all() if hosts is None else hosts
    return (
        hosts.active()
        .annotate(
            cell_count=_count(Cell),
            cpu_count=_count(PhysicalCpu),
            vm_count=_count(VirtualMachine, gone_at__isnull=True),
            cross_node_count=_count(VirtualMachine, gone_at__isnull=True, cross_node=True),
            drift_count=_count(VirtualMachine, gone_at__isnull=True, drift=True),
            changed_outside_count=_count(
                VirtualMachine, gone_at__isnull=True, changed_outside=True
            ),
        )
        .prefetch_related(Prefetch("cells", queryset=Cell.objects.order_by("cell_id")))
        .order_by("name")
    )


def with_cell_memory(hosts) -> list[Host]:
    """*hosts* (rows of :func:`dashboard_rows`) as a list, each carrying ``cell_memory``: its
    cells as :class:`CellUsage` (formatted memory)."""
    hosts = list(hosts)
    for host in hosts:
        host.cell_memory = cell_usage(host.cells.all())
    return hosts


def fleet_drift_totals() -> dict[str, int]:
    """The dashboard's drift summary over every active host (whatever page or filter the list
    shows): VMs with live-only tuning, and VMs changed outside the portal; one query."""
    return (
        VirtualMachine.objects.present()
        .filter(host__removed_at__isnull=True)
        .aggregate(
            drift_total=Count("pk", filter=Q(drift=True)),
            changed_outside_total=Count("pk", filter=Q(changed_outside=True)),
        )
    )


# --- host page --------------------------------------------------------------------------------

#: Stands for a VM's uuid in a URL reversed once per host (see :func:`diagram_vms`).
_PLACEHOLDER_UUID = "00000000-0000-0000-0000-000000000000"


def host_vm_rows(host: Host, *, with_memory: bool = False) -> QuerySet[VirtualMachine]:
    """The host's present VMs by name, their host joined: what the host page's VM table (and,
    *with_memory*, its VM memory per cell) pages through, a COUNT and one page of rows.

    Without the tuning snapshots (two JSON documents per VM that only the VM page reads).
    """
    vms = host.vms.present()
    if with_memory:
        vms = vms.filter(Exists(VmCellMemory.objects.filter(vm=OuterRef("pk"))))
    return vms.select_related("host").defer("tuning_live", "tuning_config").order_by("name")


def _vm_is_live(vm: VirtualMachine) -> bool:
    return vm.vcpu_current_live is not None


def _affinity(
    affinity: str, pin_live: str, pin_config: str, live: bool, default: frozenset[int]
) -> frozenset[int]:
    return safe_cpuset(affinity) or safe_cpuset(pin_live if live else pin_config) or default


def vcpu_affinity(vm: VirtualMachine, pin: VcpuPin, default: frozenset[int]) -> frozenset[int]:
    """Where a vCPU may run: what vcpuinfo reported, else its pin, else the VM's default."""
    return _affinity(pin.affinity, pin.pin_live, pin.pin_config, _vm_is_live(vm), default)


#: The columns the diagram is drawn from, read as tuples: a host page draws every VM of the
#: host, and a model instance per VM and per vCPU was most of its time on a 1,000-VM host.
_DIAGRAM_VM = (
    "pk",
    "name",
    "uuid",
    "vcpu_current_live",
    "emulatorpin",
    "emulatorpin_config",
    "memory_cells",
    "memory_kib",
    "cross_node",
)
_DIAGRAM_VCPU = ("vm_id", "vcpu", "online", "affinity", "pin_live", "pin_config", "last_cpu")


def diagram_vms(host: Host, host_cpus: frozenset[int] | None = None) -> list[DiagramVm]:
    """The present VMs of *host* as :class:`DiagramVm`, by name: two queries (one when the
    page passes *host_cpus*, the host's CPU ids, the default affinity of an unpinned vCPU).

    A vCPU may run where vcpuinfo last said (its affinity), else on its pin (live pin for a
    running VM, config pin otherwise), else anywhere on the host; offline vCPUs of a running
    VM are not drawn. The emulator pin is the live one for a running VM, else the config's.
    """
    if host_cpus is None:
        host_cpus = frozenset(host.cpus.values_list("cpu_id", flat=True))
    # One reverse() for the host, not one per VM (a thousand VMs cost tens of ms): the URL of
    # a placeholder uuid, the VM's own put in its place.
    # (The last occurrence: a host's name is a slug and could look like a uuid too.)
    head, tail = reverse("vms:detail", args=[host.name, _PLACEHOLDER_UUID]).rsplit(
        _PLACEHOLDER_UUID, 1
    )
    present = host.vms.present()
    vcpus: dict[int, list] = {}
    for pin in (
        VcpuPin.objects.filter(vm__in=present)
        .order_by("vm_id", "vcpu")
        .values_list(*_DIAGRAM_VCPU, named=True)
    ):
        vcpus.setdefault(pin.vm_id, []).append(pin)
    out = []
    for vm in present.order_by("name").values_list(*_DIAGRAM_VM, named=True):
        live = vm.vcpu_current_live is not None
        affinity: dict[int, frozenset[int]] = {}
        pinned: set[int] = set()
        last_cpu: dict[int, int] = {}
        for pin in vcpus.get(vm.pk, ()):
            if live and not pin.online:
                continue
            affinity[pin.vcpu] = _affinity(
                pin.affinity, pin.pin_live, pin.pin_config, live, host_cpus
            )
            if pin.pin_live if live else pin.pin_config:
                pinned.add(pin.vcpu)
            if pin.last_cpu is not None:
                last_cpu[pin.vcpu] = pin.last_cpu
        out.append(
            DiagramVm(
                name=vm.name,
                uuid=str(vm.uuid),
                url=f"{head}{vm.uuid}{tail}",
                vcpu_affinity=affinity,
                pinned_vcpus=frozenset(pinned),
                emulatorpin=safe_cpuset(vm.emulatorpin if live else vm.emulatorpin_config) or None,
                last_cpu=last_cpu,
                memory_cells=safe_nodeset(vm.memory_cells),
                memory_kib=vm.memory_kib,
                cross_node=vm.cross_node,
            )
        )
    return out


# --- VM page ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VcpuRow:
    vcpu: int
    cpu: int | None
    state: str
    online: bool
    affinity: str
    strip: str
    pin_live: str
    pin_config: str
    pinned: bool
    cells: str


def vcpuinfo_rows(vm: VirtualMachine, width: int, cell_of: dict[int, int]) -> list[VcpuRow]:
    """`virsh vcpuinfo` as rows: vCPU, CPU, state, affinity as a cpuset and as the y/- strip."""
    default = frozenset(range(width))
    rows = []
    for pin in vm.vcpus.all():
        allowed = vcpu_affinity(vm, pin, default)
        cells = sorted({cell_of[c] for c in allowed if c in cell_of})
        rows.append(
            VcpuRow(
                vcpu=pin.vcpu,
                cpu=pin.last_cpu,
                state=pin.state or ("running" if pin.online and _vm_is_live(vm) else "offline"),
                online=pin.online,
                affinity=format_cpuset(allowed) if allowed else "",
                strip=affinity_strip(allowed, width),
                pin_live=pin.pin_live,
                pin_config=pin.pin_config,
                pinned=bool(pin.pin_live if _vm_is_live(vm) else pin.pin_config),
                cells=",".join(str(c) for c in cells),
            )
        )
    return rows


def vm_with_vcpus(host_name: str, uuid: str) -> QuerySet[VirtualMachine]:
    return (
        VirtualMachine.objects.filter(host__name=host_name, uuid=uuid)
        .select_related("host")
        .prefetch_related(Prefetch("vcpus", queryset=VcpuPin.objects.order_by("vcpu")))
    )


def host_vm_filter(qs: QuerySet[VirtualMachine]) -> QuerySet[VirtualMachine]:
    """VM list rows: host joined, nothing per row, without the tuning snapshots (two JSON
    documents per VM that only the VM page reads: a fleet's VM list sorted 20,000 of them)."""
    return qs.select_related("host").defer("tuning_live", "tuning_config")
