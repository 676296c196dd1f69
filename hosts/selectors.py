"""Read-side queries for the host and VM pages.

Every function here issues a fixed number of SQL queries whatever the number of hosts, cells,
CPUs or VMs (annotations, subqueries and prefetches, no per-row lookups), so that a dashboard
of 200 hosts or a host with 500 VMs costs the same handful of queries as a lab with one.
Values are shaped for templates (strings already formatted) so templates hold no logic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, IntegerField, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce

from hosts.diagram import CellMemory, DiagramVm
from hosts.models import Cell, Host, PhysicalCpu
from numaportal.virt.cpuset import CpusetError, format_cpuset, parse_cpuset, parse_nodeset
from vms.models import VcpuPin, VirtualMachine

# --- formatting -------------------------------------------------------------------------------


def format_kib(kib: int | None) -> str:
    """Memory the way `numactl -H` readers think of it: binary units, one decimal."""
    if kib is None:
        return "?"
    value = float(kib)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "KiB" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def safe_cpuset(text: str | None) -> frozenset[int]:
    """A stored cpuset string as a set; blank or unparsable (hostile host data) -> empty."""
    if not text:
        return frozenset()
    try:
        return parse_cpuset(text)
    except CpusetError:
        return frozenset()


def safe_nodeset(text: str | None) -> frozenset[int]:
    if not text:
        return frozenset()
    try:
        return parse_nodeset(text)
    except CpusetError:
        return frozenset()


def affinity_strip(cpus: Iterable[int], width: int) -> str:
    """The y/- string `virsh vcpuinfo` prints as "CPU Affinity": one char per host CPU."""
    allowed = frozenset(cpus)
    return "".join("y" if cpu in allowed else "-" for cpu in range(width))


# --- cells ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellUsage:
    cell_id: int
    total_kib: int
    free_kib: int | None
    cpus: str

    @property
    def used_kib(self) -> int | None:
        return None if self.free_kib is None else max(self.total_kib - self.free_kib, 0)

    @property
    def used_pct(self) -> int | None:
        if self.free_kib is None or not self.total_kib:
            return None
        return round(100 * (self.used_kib or 0) / self.total_kib)

    @property
    def total(self) -> str:
        return format_kib(self.total_kib)

    @property
    def free(self) -> str:
        return format_kib(self.free_kib) if self.free_kib is not None else "unknown"

    @property
    def used(self) -> str:
        return format_kib(self.used_kib) if self.free_kib is not None else "unknown"


def cell_usage(cells: Iterable[Cell], cpus_by_cell: dict[int, list[int]] | None = None):
    cpus_by_cell = cpus_by_cell or {}
    return [
        CellUsage(
            cell_id=cell.cell_id,
            total_kib=cell.memory_kib,
            free_kib=cell.free_kib,
            cpus=format_cpuset(cpus_by_cell[cell.cell_id])
            if cpus_by_cell.get(cell.cell_id)
            else "",
        )
        for cell in cells
    ]


def cell_memory(cells: Iterable[Cell]) -> list[CellMemory]:
    """Cell rows as the diagram's CellMemory (free unknown before the first sync -> 0 shown)."""
    return [
        CellMemory(cell_id=c.cell_id, total_kib=c.memory_kib, free_kib=c.free_kib) for c in cells
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


def dashboard_hosts() -> list[Host]:
    """Active hosts with their counts and cells: two queries for any number of hosts.

    Each host carries ``cell_memory``: its cells as :class:`CellUsage` (formatted memory).
    """
    hosts = list(
        Host.objects.active()
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
    )
    for host in hosts:
        host.cell_memory = cell_usage(host.cells.all())
    return hosts


# --- host page --------------------------------------------------------------------------------


def host_vms(host: Host, *, include_gone: bool = False) -> list[VirtualMachine]:
    """The host's VMs with their vCPU rows, in two queries."""
    vms = host.vms.all() if include_gone else host.vms.present()
    return list(
        vms.order_by("name").prefetch_related(
            Prefetch("vcpus", queryset=VcpuPin.objects.order_by("vcpu"))
        )
    )


def host_cells(host: Host) -> tuple[list[Cell], dict[int, list[int]]]:
    """Cell rows and each cell's CPU ids (two queries)."""
    cells = list(host.cells.order_by("cell_id"))
    by_cell: dict[int, list[int]] = {c.cell_id: [] for c in cells}
    for cell_id, cpu_id in (
        PhysicalCpu.objects.filter(host=host)
        .order_by("cpu_id")
        .values_list("cell__cell_id", "cpu_id")
    ):
        by_cell.setdefault(cell_id, []).append(cpu_id)
    return cells, by_cell


def _vm_is_live(vm: VirtualMachine) -> bool:
    return vm.vcpu_current_live is not None


def vcpu_affinity(vm: VirtualMachine, pin: VcpuPin, default: frozenset[int]) -> frozenset[int]:
    """Where a vCPU may run: what vcpuinfo reported, else its pin, else the VM's default."""
    affinity = safe_cpuset(pin.affinity)
    if affinity:
        return affinity
    pinned = safe_cpuset(pin.pin_live if _vm_is_live(vm) else pin.pin_config)
    return pinned or default


def diagram_vm(vm: VirtualMachine, host_cpus: frozenset[int], url: str) -> DiagramVm:
    """One VM as the diagram wants it; uses only prefetched vCPU rows (no queries)."""
    live = _vm_is_live(vm)
    affinity: dict[int, frozenset[int]] = {}
    pinned: set[int] = set()
    last_cpu: dict[int, int] = {}
    for pin in vm.vcpus.all():
        if live and not pin.online:
            continue
        affinity[pin.vcpu] = vcpu_affinity(vm, pin, host_cpus)
        if pin.pin_live if live else pin.pin_config:
            pinned.add(pin.vcpu)
        if pin.last_cpu is not None:
            last_cpu[pin.vcpu] = pin.last_cpu
    emulator = vm.emulatorpin if live else vm.emulatorpin_config
    return DiagramVm(
        name=vm.name,
        uuid=str(vm.uuid),
        url=url,
        vcpu_affinity=affinity,
        pinned_vcpus=frozenset(pinned),
        emulatorpin=safe_cpuset(emulator) or None,
        last_cpu=last_cpu,
        memory_cells=safe_nodeset(vm.memory_cells),
        memory_kib=vm.memory_kib,
        cross_node=vm.cross_node,
    )


def diagram_vms(
    host: Host,
    vms: list[VirtualMachine] | None = None,
    host_cpus: frozenset[int] | None = None,
) -> list[DiagramVm]:
    """Present VMs of *host* as :class:`DiagramVm`; a constant number of queries.

    Pass *vms* (from :func:`host_vms`) and *host_cpus* when the page already has them: then
    this issues no query at all.
    """
    if vms is None:
        vms = host_vms(host)
    if host_cpus is None:
        host_cpus = frozenset(host.cpus.values_list("cpu_id", flat=True))
    out = []
    for vm in vms:
        if vm.gone_at is not None:
            continue
        # reverse() with the host we already hold: vm.get_absolute_url() would load vm.host.
        vm.host = host
        out.append(diagram_vm(vm, host_cpus, vm.get_absolute_url()))
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


def host_cpu_map(host: Host) -> tuple[int, dict[int, int]]:
    """(strip width, cpu id -> cell id): width is the highest CPU id + 1, as virsh counts."""
    cell_of = dict(PhysicalCpu.objects.filter(host=host).values_list("cpu_id", "cell__cell_id"))
    width = max(cell_of, default=-1) + 1
    return width, cell_of


def vm_with_vcpus(host_name: str, uuid: str) -> QuerySet[VirtualMachine]:
    return (
        VirtualMachine.objects.filter(host__name=host_name, uuid=uuid)
        .select_related("host")
        .prefetch_related(Prefetch("vcpus", queryset=VcpuPin.objects.order_by("vcpu")))
    )


def host_vm_filter(qs: QuerySet[VirtualMachine]) -> QuerySet[VirtualMachine]:
    """VM list rows: host joined, nothing per row."""
    return qs.select_related("host")


__all__ = [
    "CellUsage",
    "VcpuRow",
    "affinity_strip",
    "cell_memory",
    "cell_usage",
    "dashboard_hosts",
    "diagram_vm",
    "diagram_vms",
    "format_kib",
    "host_cells",
    "host_cpu_map",
    "host_vm_filter",
    "host_vms",
    "vcpuinfo_rows",
    "vm_with_vcpus",
]
