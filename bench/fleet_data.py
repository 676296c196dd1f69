"""The fleet of ``bench/fleet_pages.py``, built in bulk: hosts, cells, CPUs, policies, numastat
samples, VMs with their vCPU rows, memory per cell and locality, and change records (see that
module's docstring for the shares). Import after ``bench.benchkit`` (Django set up)."""

from __future__ import annotations

import random
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from balancing.models import BalancingPolicy
from changes.models import Change
from hosts.models import Cell, CellSample, Host, PhysicalCpu, SampleSource
from numaportal.virt.cpuset import format_cpuset, format_nodeset
from numaportal.virt.hostprobe import NUMASTAT_COUNTERS
from numaportal.virt.topology import HostTopology, parse_capabilities
from vms.models import VcpuPin, VirtualMachine, VmCellMemory, VmLocalitySample

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TOPOLOGIES = (
    "x86_64-2node-24cpu-ht.xml",
    "x86_64-2node-64cpu-amd-smt.xml",
    "x86_64-4node-basic.xml",
    "x86_64-1node-dies.xml",
)
GIB_KIB = 1 << 20
VM_KINDS = ("vcpupin", "emulatorpin", "numatune", "setvcpus")
BATCH = 2000


@dataclass
class Spec:
    """One VM to create, before its row exists."""

    name: str
    cells: frozenset[int]
    pins: dict[int, str]
    running: bool
    drift: bool
    memory_cells: str


def _tuning(spec: Spec, vcpus: int, emulatorpin: str) -> dict:
    """A parsed tuning snapshot (the keys :func:`numaportal.virt.domain.tuning_dict` writes)."""
    return {
        "name": spec.name,
        "vcpu_max": vcpus,
        "vcpu_current": vcpus,
        "vcpu_placement": "static",
        "vcpu_cpuset": None,
        "vcpupin": dict(sorted((str(v), cpus) for v, cpus in spec.pins.items())),
        "emulatorpin": emulatorpin or None,
        "numatune_mode": "strict" if spec.memory_cells else None,
        "numatune_nodeset": spec.memory_cells or None,
        "numatune_placement": None,
        "numatune_memnodes": {},
        "memory_kib": 4 * GIB_KIB,
        "current_memory_kib": 4 * GIB_KIB,
        "vcpus_enabled": {str(v): True for v in range(vcpus)},
        "vcpus_hotpluggable": {str(v): False for v in range(vcpus)},
        "guest_numa_cells": [],
    }


def _specs(rng: random.Random, topology: HostTopology, count: int, host_index: int) -> list[Spec]:
    cpu_cells = [cell for cell in topology.cells if cell.cpus]
    specs = []
    for i in range(count):
        roll = rng.random()
        home = cpu_cells[(host_index + i) % len(cpu_cells)]
        vcpus = 4 if i % 3 == 0 else 2
        ids = sorted(home.cpu_ids)
        if roll < 0.7 or len(cpu_cells) == 1:  # pinned within one cell
            pins = {v: str(ids[(2 * i + v) % len(ids)]) for v in range(vcpus)}
            cells = frozenset({home.id})
        elif roll < 0.8:  # pinned across two cells
            other = sorted(cpu_cells[(host_index + i + 1) % len(cpu_cells)].cpu_ids)
            pins = {v: str((ids if v % 2 else other)[(i + v) % len(ids)]) for v in range(vcpus)}
            cells = frozenset({home.id, cpu_cells[(host_index + i + 1) % len(cpu_cells)].id})
        else:  # unpinned: may run on every cell
            pins = {}
            cells = frozenset(cell.id for cell in cpu_cells)
        specs.append(
            Spec(
                name=f"vm-{host_index:03d}-{i:02d}",
                cells=cells,
                pins=pins,
                running=rng.random() < 0.9,
                drift=rng.random() < 0.05,
                memory_cells=format_nodeset(cells) if pins and len(cells) == 1 else "",
            )
        )
    return specs


@contextmanager
def created_at_as_given():
    """bulk_create keeps the records' own ``created_at`` (auto_now_add would set now)."""
    field = Change._meta.get_field("created_at")
    field.auto_now_add = False
    try:
        yield
    finally:
        field.auto_now_add = True


def build_fleet(hosts: int, vms_per_host: int, changes: int, seed: int = 16) -> dict:
    """The fleet, in bulk (see the module's docstring); what was built, counted."""
    rng = random.Random(seed)
    now = timezone.now().replace(microsecond=0)
    xmls = {name: (FIXTURES / "capabilities" / name).read_text() for name in TOPOLOGIES}
    topologies = {name: parse_capabilities(xml) for name, xml in xmls.items()}
    live_xml = (FIXTURES / "domains" / "seed-pinned-live.xml").read_text()
    persistent_xml = (FIXTURES / "domains" / "seed-pinned-inactive.xml").read_text()

    fixture_of = [TOPOLOGIES[i % len(TOPOLOGIES)] for i in range(hosts)]
    host_rows = Host.objects.bulk_create(
        Host(
            name=f"hv{i:03d}",
            uri=f"qemu+ssh://root@hv{i:03d}.example.net/system",
            worker_queue=f"host.hv{i:03d}",
            sync_status=Host.SyncStatus.OK,
            last_sync_at=now,
            last_sync_ok_at=now,
            arch=topologies[fixture_of[i]].arch,
            cpu_model=topologies[fixture_of[i]].cpu_model or "",
            cpu_vendor=topologies[fixture_of[i]].cpu_vendor or "",
            capabilities_xml=xmls[fixture_of[i]],
            hostname=f"hv{i:03d}.example.net",
            last_sample_at=now,
            last_sample_source=SampleSource.PROBE,
            numa_balancing=i % 2,
        )
        for i in range(hosts)
    )
    cells = Cell.objects.bulk_create(
        Cell(
            host=host,
            cell_id=cell.id,
            memory_kib=cell.memory_kib,
            free_kib=cell.memory_kib // 4,
            distances={str(k): v for k, v in cell.distances.items()},
        )
        for host, fixture in zip(host_rows, fixture_of, strict=True)
        for cell in topologies[fixture].cells
    )
    if cells[0].pk is None:  # SQLite before 3.35 returns no ids
        cells = list(Cell.objects.order_by("host_id", "cell_id"))
    cell_row = {(c.host_id, c.cell_id): c for c in cells}
    PhysicalCpu.objects.bulk_create(
        (
            PhysicalCpu(
                host=host,
                cell=cell_row[(host.pk, cell.id)],
                cpu_id=cpu.id,
                socket_id=cpu.socket_id,
                die_id=cpu.die_id,
                core_id=cpu.core_id,
                siblings=format_cpuset(cpu.siblings),
            )
            for host, fixture in zip(host_rows, fixture_of, strict=True)
            for cell in topologies[fixture].cells
            for cpu in cell.cpus
        ),
        batch_size=BATCH,
    )
    BalancingPolicy.objects.bulk_create(
        BalancingPolicy(host=host, mode=BalancingPolicy.Mode.RECOMMEND) for host in host_rows
    )
    CellSample.objects.bulk_create(
        (
            CellSample(
                host=host,
                cell_id=cell.id,
                taken_at=at,
                source=SampleSource.PROBE,
                free_kib=cell.memory_kib // 4,
                boot_time=1_700_000_000,
                **{name: 1_000_000 * (n + 1) for n, name in enumerate(NUMASTAT_COUNTERS)},
                interval_s=60.0,
            )
            for host, fixture in zip(host_rows, fixture_of, strict=True)
            for cell in topologies[fixture].cells
            for at in (now - timedelta(minutes=1), now)
        ),
        batch_size=BATCH,
    )

    specs: list[tuple[Host, HostTopology, Spec]] = []
    for index, (host, fixture) in enumerate(zip(host_rows, fixture_of, strict=True)):
        topology = topologies[fixture]
        specs.extend((host, topology, s) for s in _specs(rng, topology, vms_per_host, index))
    vm_rows = []
    for n, (host, topology, spec) in enumerate(specs):
        vcpus = len(spec.pins) or (4 if n % 3 == 0 else 2)
        home_cpus = [c for cell in topology.cells if cell.id in spec.cells for c in cell.cpu_ids]
        emulatorpin = format_cpuset(home_cpus) if spec.pins else ""
        config = _tuning(spec, vcpus, emulatorpin)
        live = dict(config)
        if spec.drift and spec.pins:
            live["vcpupin"] = {**config["vcpupin"], "0": format_cpuset(home_cpus)}
        multi = len([c for c in topology.cells if c.cpus]) > 1
        vm_rows.append(
            VirtualMachine(
                host=host,
                uuid=uuid.UUID(int=n + 1),
                name=spec.name,
                state="running" if spec.running else "shut off",
                last_seen_at=now,
                vcpu_max_config=vcpus,
                vcpu_current_config=vcpus,
                vcpu_max_live=vcpus if spec.running else None,
                vcpu_current_live=vcpus if spec.running else None,
                memory_kib=4 * GIB_KIB,
                current_memory_kib=4 * GIB_KIB,
                numatune_mode="strict" if spec.memory_cells else "",
                numatune_nodeset=spec.memory_cells,
                emulatorpin=emulatorpin if spec.running else "",
                emulatorpin_config=emulatorpin,
                pinning=VirtualMachine.Pinning.PINNED
                if spec.pins
                else VirtualMachine.Pinning.UNPINNED,
                cells=format_nodeset(spec.cells),
                memory_cells=spec.memory_cells,
                cross_node=multi and len(spec.cells) > 1,
                drift=spec.drift and bool(spec.pins) and spec.running,
                drift_detail="vCPU 0 pinned to a cell live, one CPU in config"
                if spec.drift and spec.pins and spec.running
                else "",
                tuning_live=live if spec.running else None,
                tuning_config=config,
            )
        )
    vm_rows = VirtualMachine.objects.bulk_create(vm_rows, batch_size=BATCH)
    if vm_rows[0].pk is None:
        vm_rows = list(VirtualMachine.objects.order_by("uuid"))
    all_cpus = {
        fixture: format_cpuset(topology.cpu_ids) for fixture, topology in topologies.items()
    }
    fixture_of_host = dict(zip((h.pk for h in host_rows), fixture_of, strict=True))
    VcpuPin.objects.bulk_create(
        (
            VcpuPin(
                vm=vm,
                vcpu=v,
                online=True,
                pin_live=spec.pins.get(v, "") if spec.running else "",
                pin_config=spec.pins.get(v, ""),
                affinity=(spec.pins.get(v) or all_cpus[fixture_of_host[host.pk]])
                if spec.running
                else "",
                last_cpu=int(spec.pins.get(v, "0").split("-")[0]) if spec.running else None,
                state="running" if spec.running else "",
            )
            for vm, (host, _topology, spec) in zip(vm_rows, specs, strict=True)
            for v in range(vm.vcpu_max_config)
        ),
        batch_size=BATCH * 2,
    )
    running = [
        (vm, spec) for vm, (_h, _t, spec) in zip(vm_rows, specs, strict=True) if spec.running
    ]
    VmCellMemory.objects.bulk_create(
        (
            VmCellMemory(
                vm=vm,
                cell_id=cell,
                sampled_at=now,
                huge_mib=0,
                heap_mib=3000 / len(spec.cells),
                stack_mib=0.1,
                private_mib=1000 / len(spec.cells),
                files_mib=20,
            )
            for vm, spec in running
            for cell in sorted(spec.cells)
        ),
        batch_size=BATCH * 2,
    )
    VmLocalitySample.objects.bulk_create(
        (
            VmLocalitySample(
                vm=vm,
                host_id=vm.host_id,
                taken_at=at,
                locality=1.0 if len(spec.cells) == 1 else round(0.5 + rng.random() / 2, 3),
                own_mib={str(cell): 4000 / len(spec.cells) for cell in spec.cells},
                home_cells=format_nodeset(spec.cells),
                latest=latest,
            )
            for vm, spec in running
            for at, latest in ((now - timedelta(minutes=1), False), (now, True))
        ),
        batch_size=BATCH * 2,
    )

    # Change records: --changes of them over the VMs (and a few numa_balancing of hosts).
    operator = get_user_model().objects.get(username="operator")
    changed_outside = set(rng.sample(range(len(vm_rows)), k=len(vm_rows) // 50))
    statuses = ["succeeded"] * 90 + ["failed"] * 8 + ["cancelled"]
    last_of_vm: dict[int, int] = {}
    plan = []
    for n in range(changes):
        at = now - timedelta(seconds=(changes - n) * 90 * 86400 // changes + 60)
        if n % 50 == 49:
            plan.append((None, at))
            continue
        index = rng.randrange(len(vm_rows))
        last_of_vm[index] = len(plan)
        plan.append((index, at))
    records = []
    for position, (index, at) in enumerate(plan):
        status = statuses[position % len(statuses)] if position < len(plan) - 20 else "queued"
        finished = status != "queued"
        if index is None:
            host = host_rows[position % len(host_rows)]
            records.append(
                Change(
                    actor=operator,
                    actor_name=operator.username,
                    host=host,
                    target_name=host.name,
                    kind="numa_balancing",
                    params={"value": position % 2},
                    scope="live",
                    reason=f"fleet bench: numa_balancing {position}",
                    status=status,
                    created_at=at,
                    started_at=at if finished else None,
                    finished_at=at + timedelta(seconds=2) if finished else None,
                )
            )
            continue
        vm = vm_rows[index]
        spec = specs[index][2]
        kind = VM_KINDS[position % len(VM_KINDS)]
        after = None
        if finished:
            live, config = vm.tuning_live, vm.tuning_config
            if last_of_vm.get(index) == position and index in changed_outside and vm.tuning_live:
                # what the change left, before someone changed it with virsh
                live = {**live, "vcpu_current": live["vcpu_current"] + 1}
            after = {
                "name": vm.name,
                "uuid": str(vm.uuid),
                "state": vm.state,
                "active": spec.running,
                "persistent": True,
                "persistent_xml": persistent_xml,
                "live_xml": live_xml if spec.running else None,
                "config_tuning": config,
                "live_tuning": live,
                "vcpucount": {"maximum_config": vm.vcpu_max_config},
                "vcpu_info": [
                    {"vcpu": v, "state": 1, "cpu_time_ns": 10**9, "cpu": 0, "affinity": "0"}
                    for v in range(vm.vcpu_max_config)
                ],
                "emulatorpin_config": vm.emulatorpin_config,
                "emulatorpin_live": vm.emulatorpin,
            }
        records.append(
            Change(
                actor=operator,
                actor_name=operator.username,
                host_id=vm.host_id,
                vm=vm,
                target_name=vm.name,
                kind=kind,
                params={"vcpu": 0, "cpuset": "0"} if kind == "vcpupin" else {"cpuset": "0"},
                scope="both",
                reason=f"fleet bench: {kind} of {vm.name} ({position})",
                status=status,
                created_at=at,
                started_at=at if finished else None,
                finished_at=at + timedelta(seconds=1) if finished else None,
                before={"config_tuning": vm.tuning_config, "live_tuning": vm.tuning_live},
                after=after,
                diff="vcpupin of vCPU 0: 0 -> 1" if finished else "",
                outcome="vCPU 0 pinned to 0 live and in the config" if finished else "",
            )
        )
        if len(records) >= BATCH:
            with created_at_as_given():
                Change.objects.bulk_create(records)
            records = []
    with created_at_as_given():
        Change.objects.bulk_create(records)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")  # as autovacuum leaves a settled database
    return {
        "hosts": Host.objects.count(),
        "vms": VirtualMachine.objects.count(),
        "vcpus": VcpuPin.objects.count(),
        "changes": Change.objects.count(),
        "drifted": VirtualMachine.objects.filter(drift=True).count(),
        "cross_node": VirtualMachine.objects.filter(cross_node=True).count(),
        "vm_memory_rows": VmCellMemory.objects.count(),
    }
