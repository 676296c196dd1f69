"""VM locality history: written with every on-host sample (same transaction as the VM memory
rows), rolled up and pruned like numastat's, read back per window; queries per sample stay
constant in the number of VMs.

Samples go through the real storing path (``vms.sampling.store_sample``) with a sample as an
on-host worker hands it back; hosts are capabilities fixtures, with the NUMA lab's three-node
distances where the memory-only node matters, and two sub-NUMA clusters of one socket (distance
12, memory there counts 0.8) where the history needs memory that counts partly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from hosts import numastat
from hosts.models import Cell, Host, SampleSource
from hosts.probing import HostSample
from numaportal.virt import hostprobe
from vms import locality_history, locality_rollups
from vms import sampling as vm_sampling
from vms.models import VirtualMachine, VmCellMemory, VmLocalityRollup, VmLocalitySample
from vms.tasks import rollup_locality

pytestmark = [pytest.mark.web, pytest.mark.django_db]

BASE = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)

# x86_64-2node-24cpu-ht.xml: cell 0 = CPUs 0-5,12-17, cell 1 = CPUs 6-11,18-23, distance 21.
ON_CELL_0 = {0: "0", 1: "1"}
ON_CELL_1 = {0: "6", 1: "7"}


def numa_lab(host: Host) -> Host:
    """Give *host* the NUMA lab's distances: a memory-only node 2 at 30 from both CPU nodes."""
    Cell.objects.filter(host=host, cell_id=0).update(distances={"0": 10, "1": 21, "2": 30})
    Cell.objects.filter(host=host, cell_id=1).update(distances={"0": 21, "1": 10, "2": 30})
    Cell.objects.create(
        host=host, cell_id=2, memory_kib=512 * 1024, distances={"0": 30, "1": 30, "2": 10}
    )
    return host


#: What memory on the sibling sub-NUMA cluster counts: (2 * 10 - 12) / 10.
SNC_WEIGHT = 0.8


def snc(host: Host) -> Host:
    """Make *host*'s cells 0 and 1 two sub-NUMA clusters of one socket: distance 12."""
    Cell.objects.filter(host=host, cell_id=0).update(distances={"0": 10, "1": 12})
    Cell.objects.filter(host=host, cell_id=1).update(distances={"0": 12, "1": 10})
    return host


def store(
    host: Host,
    taken_at: datetime,
    memory: dict[VirtualMachine, dict[int, float]],
    *,
    files: float = 0.0,
) -> vm_sampling.SampleResult:
    """One on-host sample of *host*: each VM's heap MiB per cell (plus *files* MiB of mapped
    files' page cache on cell 0, which is not the VM's own memory)."""
    vm_memory = {}
    for vm, cells in memory.items():
        per_cell = {cell: hostprobe.CellMemory(heap=mib) for cell, mib in cells.items()}
        if files:
            old = per_cell.get(0, hostprobe.CellMemory())
            per_cell[0] = hostprobe.CellMemory(
                heap=old.heap, private=old.private + files, files=files
            )
        vm_memory[vm.name] = hostprobe.ProcessMemory(pid=1000 + vm.pk, cells=per_cell)
    sample = HostSample(
        host=host.name,
        taken_at=taken_at,
        source=SampleSource.PROBE,
        free_kib={0: 1024, 1: 1024},
        running=tuple((vm.name, str(vm.uuid)) for vm in memory),
        probe=hostprobe.HostProbe(numastat={}, boot_time=1, numa_balancing=1, vm_memory=vm_memory),
    )
    return vm_sampling.store_sample(host.pk, sample)


@pytest.fixture
def host(host_factory) -> Host:
    return host_factory("hv1", worker_queue="host.hv1")


def test_each_sample_stores_every_vms_locality_and_own_memory(host, vm_factory) -> None:
    numa_lab(host)
    home = vm_factory(host, "home", pins=ON_CELL_0)
    remote = vm_factory(host, "remote", pins=ON_CELL_0)  # like numalab2-remote
    cxl = vm_factory(host, "cxl", pins=ON_CELL_0)
    store(host, BASE, {home: {0: 512.0}, remote: {1: 128.0}, cxl: {0: 300.0, 2: 100.0}}, files=13)
    rows = {r.vm.name: r for r in VmLocalitySample.objects.select_related("vm")}
    assert rows["home"].locality == 1.0  # 13 MiB of QEMU's libraries on cell 0 do not count
    assert rows["home"].own_mib == {"0": 512.0}
    assert rows["remote"].locality == 0.0  # all of it on the other socket (distance 21)
    assert rows["remote"].own_mib == {"0": 0.0, "1": 128.0}  # only its page cache on cell 0
    assert rows["cxl"].locality == pytest.approx(0.75)  # the memory-only node (30) counts 0
    assert all(r.latest and r.taken_at == BASE and r.home_cells == "0" for r in rows.values())
    # the same sample's memory rows, which the bars show
    assert VmCellMemory.objects.filter(vm=remote, cell_id=1).get().own_mib == 128.0


def test_a_vm_with_unknown_cells_has_no_locality_but_its_memory_is_kept(host, vm_factory) -> None:
    vm = vm_factory(host, "unknown", cells="")
    store(host, BASE, {vm: {0: 10.0, 1: 20.0}})
    row = VmLocalitySample.objects.get(vm=vm)
    assert row.locality is None and row.own_mib == {"0": 10.0, "1": 20.0}


def test_the_newest_sample_is_now_and_a_stopped_vm_has_no_locality_now(host, vm_factory):
    a = vm_factory(host, "a", pins=ON_CELL_0)
    b = vm_factory(host, "b", pins=ON_CELL_1)
    store(host, BASE, {a: {0: 100.0}, b: {0: 100.0}})
    store(host, BASE + timedelta(minutes=1), {a: {0: 50.0, 1: 50.0}})  # b stopped
    assert VmLocalitySample.objects.count() == 3  # history is kept
    latest = VmLocalitySample.objects.filter(latest=True)
    assert [(r.vm.name, r.taken_at) for r in latest] == [("a", BASE + timedelta(minutes=1))]
    assert locality_history.locality_now(b) is None
    now = locality_history.locality_now(a)
    assert now.locality == pytest.approx(0.5)  # half of it on the other socket, counting 0
    assert [(c.cell, c.mib, c.home) for c in now.cells] == [(0, 50.0, True), (1, 50.0, False)]
    assert now.cells[1].weight == 0.0
    assert (now.cells[0].distance, now.cells[1].distance) == (None, 21.0)  # too far, not unknown
    # A host sample with no VM running at all: nothing is "now" any more.
    store(host, BASE + timedelta(minutes=2), {})
    assert not VmLocalitySample.objects.filter(latest=True).exists()


def test_a_refused_sample_writes_no_locality_either(host, vm_factory) -> None:
    """Same transaction: a sample older than the newest one is dropped with its VM rows."""
    vm = vm_factory(host, "a", pins=ON_CELL_0)
    store(host, BASE + timedelta(minutes=5), {vm: {0: 100.0}})
    result = store(host, BASE, {vm: {1: 100.0}})
    assert "a newer sample was stored meanwhile" in result.error
    assert list(VmLocalitySample.objects.values_list("taken_at", "locality")) == [
        (BASE + timedelta(minutes=5), 1.0)
    ]


def count_queries(host: Host, vms: list[VirtualMachine], at: datetime) -> int:
    with CaptureQueriesContext(connection) as queries:
        store(host, at, {vm: {0: 100.0, 1: 20.0} for vm in vms})
    return len(queries)


def test_queries_per_sample_do_not_grow_with_vms(host, vm_factory) -> None:
    """1 VM or 40: the same statements. (SQLite splits a bulk insert into batches of 999
    parameters, 124 memory rows: past about 60 VMs with 2 cells it takes one more INSERT per
    batch there; PostgreSQL takes one.)"""
    vms = [vm_factory(host, f"vm{i:03d}", pins=ON_CELL_0) for i in range(40)]
    store(host, BASE, {vms[0]: {0: 1.0}})  # a previous sample: its rows stop being "now"
    one = count_queries(host, vms[:1], BASE + timedelta(minutes=1))
    many = count_queries(host, vms, BASE + timedelta(minutes=2))
    assert one == many
    assert VmLocalitySample.objects.filter(latest=True).count() == 40


# --- rollups and retention ----------------------------------------------------------------


def fill(host: Host, vm: VirtualMachine, start: datetime, minutes: int) -> None:
    """A sample a minute: the VM's memory moves 10 MiB a minute from cell 1 to cell 0 (on an
    :func:`snc` host, 300 MiB on cell 1 is a locality of 0.8)."""
    for m in range(minutes):
        store(host, start + timedelta(minutes=m), {vm: {0: 10.0 * m, 1: 300.0 - 10.0 * m}})


def test_rollups_sum_closed_buckets_exactly_and_only_once(host, vm_factory) -> None:
    vm = vm_factory(snc(host), "mover", pins=ON_CELL_0)
    fill(host, vm, BASE, 20)  # 00:00 .. 00:19
    assert locality_rollups.rollup_host(host, now=BASE + timedelta(minutes=21)) == 1
    rollup = VmLocalityRollup.objects.get(vm=vm)
    assert rollup.bucket_start == BASE and rollup.bucket_s == 900
    assert rollup.samples == rollup.locality_n == 15
    expected = [(10 * m + (300 - 10 * m) * SNC_WEIGHT) / 300 for m in range(15)]
    assert rollup.locality_sum == pytest.approx(sum(expected))
    assert rollup.locality_min == pytest.approx(expected[0])
    assert rollup.own_mib_sum == {"0": sum(10.0 * m for m in range(15)), "1": 3450.0}
    assert locality_rollups.rollup_host(host, now=BASE + timedelta(minutes=21)) == 0


def test_raw_samples_go_after_48h_once_rolled_up_but_now_is_kept(
    host, vm_factory, settings
) -> None:
    vm = vm_factory(host, "a", pins=ON_CELL_0)
    fill(host, vm, BASE, 30)
    now = BASE + timedelta(hours=settings.NUMAPORTAL_SAMPLE_RAW_HOURS + 1)
    result = locality_rollups.rollup_and_prune(now)
    assert result.rollups_made == 2
    # 29 raw rows go; the newest one stays: it is the VM's locality "now" until the next
    # sample, however long the host's worker has been silent.
    assert result.raw_deleted == 29
    assert list(VmLocalitySample.objects.values_list("latest", flat=True)) == [True]

    old = locality_rollups.rollup_and_prune(
        BASE + timedelta(days=settings.NUMAPORTAL_ROLLUP_DAYS + 1)
    )
    assert old.rollups_deleted == 2 and not VmLocalityRollup.objects.exists()


def test_a_host_not_rolled_up_keeps_its_raw_samples(host, vm_factory) -> None:
    vm = vm_factory(host, "a", pins=ON_CELL_0)
    now = BASE + timedelta(hours=72)
    fill(host, vm, now - timedelta(minutes=5), 3)  # all in the open bucket
    assert locality_rollups.rollup_and_prune(now).raw_deleted == 0
    assert VmLocalitySample.objects.count() == 3


def test_the_beat_task_rolls_up_and_is_scheduled(host, vm_factory) -> None:
    vm = vm_factory(host, "a", pins=ON_CELL_0)
    quarter = numastat.bucket_start((timezone.now() - timedelta(hours=1)).timestamp(), 900)
    fill(host, vm, datetime.fromtimestamp(quarter, tz=UTC), 3)  # three minutes of one quarter
    assert rollup_locality.apply().get()["rollups_made"] == 1
    entry = PeriodicTask.objects.select_related("interval").get(name="rollup-locality")
    assert entry.task == "vms.tasks.rollup_locality" and entry.interval.every == 900


# --- history ------------------------------------------------------------------------------


def test_history_from_raw_and_from_rollups_agrees(host, vm_factory) -> None:
    vm = vm_factory(snc(host), "mover", pins=ON_CELL_0)
    fill(host, vm, BASE, 30)
    now = BASE + timedelta(minutes=31)
    raw = locality_history.history(vm, "1h", now=now)
    points = dict(zip(raw.times, raw.locality, strict=True))
    first = int(BASE.timestamp())
    assert points[first] == pytest.approx(SNC_WEIGHT, abs=1e-4)  # all of it on cell 1
    assert points[first + 29 * 60] == pytest.approx((290 + 10 * SNC_WEIGHT) / 300, abs=1e-4)
    assert raw.cells == [0, 1]
    assert raw.own_mib[1][raw.times.index(first)] == 300.0
    assert raw.locality[-1] is None  # no sample in the last minute: a gap

    locality_rollups.rollup_host(host, now=now)
    rolled = locality_history.history(vm, "7d", now=now)
    buckets = {t: v for t, v in zip(rolled.times, rolled.locality, strict=True) if v is not None}
    expected = [(10 * m + (300 - 10 * m) * SNC_WEIGHT) / 300 for m in range(30)]
    # two rolled-up quarters, each the exact mean of its raw samples
    assert buckets == {
        first: pytest.approx(sum(expected[:15]) / 15, abs=1e-4),
        first + 900: pytest.approx(sum(expected[15:]) / 15, abs=1e-4),
    }
    lows = [v for v in rolled.locality_min if v is not None]
    assert lows == [pytest.approx(expected[0], abs=1e-4), pytest.approx(expected[15], abs=1e-4)]
    mib = [v for v in rolled.own_mib[0] if v is not None]
    assert mib == [70.0, 220.0]  # mean of 0..140 and of 150..290 MiB


def test_30_days_read_rollups_and_the_raw_tail(host, vm_factory) -> None:
    vm = vm_factory(snc(host), "a", pins=ON_CELL_0)
    fill(host, vm, BASE, 16)
    locality_rollups.rollup_host(host, now=BASE + timedelta(minutes=15))  # 00:00 only
    now = BASE + timedelta(minutes=20)
    month = locality_history.history(vm, "30d", now=now)
    assert month.window.bucket_s == 3600
    (value,) = [v for v in month.locality if v is not None]
    expected = [(10 * m + (300 - 10 * m) * SNC_WEIGHT) / 300 for m in range(16)]
    assert value == pytest.approx(sum(expected) / 16, abs=1e-4)  # 15 rolled up + 1 raw
