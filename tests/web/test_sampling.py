"""numastat sampling into the database: probe and libvirt-only hosts, resets, rollups, retention.

The probe reads a copy of a fixture tree (tests/fixtures/hostprobe) as its root; libvirt is
the in-process test driver (two cells, one running domain "test"), a real libvirt driver.
"""

from __future__ import annotations

import gc
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from hosts import history, rollups, sampling
from hosts.models import CellRollup, CellSample, Host, SampleSource
from hosts.probing import HostSample, take_sample
from tests.conftest import new_queue
from tests.onhost_worker import on_host_worker
from vms import requests
from vms import sampling as vm_sampling
from vms.models import VmCellMemory

pytestmark = [pytest.mark.web, pytest.mark.django_db]

TEST_URI = "test:///default"
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test driver's running domain "test"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "hostprobe"


def write_numastat(root: Path, cell: int, **values: int) -> None:
    path = root / f"sys/devices/system/node/node{cell}/numastat"
    current = dict(line.split() for line in path.read_text().splitlines() if line.strip())
    current.update({k: str(v) for k, v in values.items()})
    path.write_text("".join(f"{k} {v}\n" for k, v in current.items()))


def set_btime(root: Path, btime: int) -> None:
    path = root / "proc/stat"
    lines = [
        f"btime {btime}" if line.startswith("btime") else line
        for line in path.read_text().splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def probe_root(tmp_path: Path, settings) -> Path:
    """handmade-2cell, plus a pid file making its QEMU process (pid 1234) the domain "test"."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "handmade-2cell", root)
    (root / "run/libvirt/qemu/test.pid").write_text("1234\n")
    settings.NUMAPORTAL_PROBE_ROOT = str(root)
    return root


@pytest.fixture
def td_host(host_factory, vm_factory, settings):
    """A host on libvirt's test driver with an on-host worker, and its VM "test"."""
    gc.collect()  # the test driver keeps state while a connection to it lives
    host = host_factory("td", uri=TEST_URI, worker_queue="host.td")
    vm_factory(host, "test", uuid=uuid.UUID(TEST_UUID), vcpus=2, cells="0")
    settings.NUMAPORTAL_ON_HOST = "td"
    yield host
    gc.collect()


def test_a_probe_sample_stores_counters_free_memory_vm_memory_and_balancing(
    td_host, probe_root
) -> None:
    result = vm_sampling.sample_host(td_host.pk, probe=True)
    assert result.error == ""
    assert (result.cells, result.vms) == (2, 1)
    rows = {s.cell_id: s for s in CellSample.objects.filter(host=td_host)}
    assert rows[0].numa_hit == 1000 and rows[0].other_node == 30
    assert rows[0].source == SampleSource.PROBE
    assert rows[0].boot_time == 1780000000
    assert rows[0].free_kib is not None and rows[1].free_kib is not None  # from libvirt
    assert rows[0].interval_s is None and rows[0].numa_hit_delta is None  # first sample
    td_host.refresh_from_db()
    assert td_host.numa_balancing == 1
    assert td_host.last_sample_source == "probe" and td_host.last_sample_error == ""
    memory = {m.cell_id: m for m in VmCellMemory.objects.filter(vm__name="test")}
    assert set(memory) == {0, 1}
    assert memory[1].huge_mib > 0  # handmade-2cell's 2 MiB huge page mapping is on cell 1


def test_the_second_sample_has_deltas_and_a_reboot_has_none(td_host, probe_root) -> None:
    vm_sampling.sample_host(td_host.pk, probe=True)
    write_numastat(probe_root, 0, numa_hit=1600, local_node=1500, other_node=130)
    vm_sampling.sample_host(td_host.pk, probe=True)
    second = CellSample.objects.filter(host=td_host, cell_id=0).latest("taken_at")
    assert second.numa_hit_delta == 600
    assert second.local_node_delta == 510 and second.other_node_delta == 100
    assert second.interval_s > 0 and not second.reset

    # The host rebooted: counters start again from small numbers, boot time changed.
    write_numastat(probe_root, 0, numa_hit=40, local_node=40, other_node=0)
    set_btime(probe_root, 1790000000)
    vm_sampling.sample_host(td_host.pk, probe=True)
    third = CellSample.objects.filter(host=td_host, cell_id=0).latest("taken_at")
    assert third.reset
    assert third.numa_hit_delta is None  # no -1560 spike

    write_numastat(probe_root, 0, numa_hit=100)
    vm_sampling.sample_host(td_host.pk, probe=True)
    fourth = CellSample.objects.filter(host=td_host, cell_id=0).latest("taken_at")
    assert fourth.numa_hit_delta == 60 and not fourth.reset


def test_a_malformed_numastat_is_that_hosts_error_and_free_memory_still_counts(
    td_host, probe_root
) -> None:
    (probe_root / "sys/devices/system/node/node1/numastat").write_text("numa_hit lots\n")
    result = vm_sampling.sample_host(td_host.pk, probe=True)
    assert "node1/numastat" in result.error and "numa_hit" in result.error
    td_host.refresh_from_db()
    assert "node1/numastat" in td_host.last_sample_error
    rows = list(CellSample.objects.filter(host=td_host))
    assert len(rows) == 2  # libvirt's free memory per cell
    assert all(r.numa_hit is None and r.source == SampleSource.LIBVIRT for r in rows)


def test_a_vm_whose_process_is_gone_is_noted_and_the_rest_is_kept(td_host, probe_root) -> None:
    (probe_root / "run/libvirt/qemu/test.pid").unlink()
    result = vm_sampling.sample_host(td_host.pk, probe=True)
    assert "VM 'test'" in result.error and "test.pid: no such file" in result.error
    assert CellSample.objects.filter(host=td_host, numa_hit__isnull=False).count() == 2
    assert not VmCellMemory.objects.exists()


def test_a_worker_not_on_the_host_refuses_to_read_its_own_proc(
    td_host, probe_root, settings
) -> None:
    settings.NUMAPORTAL_ON_HOST = "portal"
    result = vm_sampling.sample_host(td_host.pk, probe=True)
    assert "this worker runs on host 'portal'" in result.error
    assert "NUMAPORTAL_ON_HOST=td" in result.error
    assert not CellSample.objects.filter(numa_hit__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_an_on_host_worker_without_a_database_hands_its_sample_to_a_central_worker(
    host_factory, vm_factory, worker_queue, probe_root, settings
) -> None:
    """The Celery path end to end: probe on the host's queue (a process of its own, no
    database), its answer stored by the central worker (the embedded one on worker_queue)."""
    settings.NUMAPORTAL_ON_HOST = ""  # this process is central only
    host = host_factory("td2", uri=TEST_URI, worker_queue=new_queue())
    vm_factory(host, "test", uuid=uuid.UUID(TEST_UUID), vcpus=2, cells="0")
    with on_host_worker(host.worker_queue, "td2", probe_root=probe_root):
        assert requests.sample_enabled_hosts() == 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not CellSample.objects.filter(host=host).exists():
            time.sleep(0.2)
    rows = {s.cell_id: s for s in CellSample.objects.filter(host=host)}
    host.refresh_from_db()
    assert host.last_sample_error == "" and host.last_sample_source == "probe"
    assert set(rows) == {0, 1}
    # The fixture tree's counters, read by the other process, stored by this one.
    assert rows[0].numa_hit == 1000 and rows[0].other_node == 30
    assert rows[0].boot_time == 1780000000 and host.numa_balancing == 1
    memory = VmCellMemory.objects.filter(vm__host=host)
    assert {m.vm.name for m in memory} == {"test"}  # its numa_maps, from the fixture tree
    assert {m.cell_id for m in memory} == {0, 1}


def test_a_malformed_answer_is_recorded_not_stored(host_factory) -> None:
    host = host_factory("bad", uri=TEST_URI, worker_queue="host.bad")
    result = vm_sampling.store_message(host.pk, {"host": "bad", "taken_at": "yesterday"})
    assert result.error.startswith("the on-host worker's sample was malformed and dropped: ")
    assert "taken_at" in result.error
    host.refresh_from_db()
    assert host.last_sample_error == result.error
    assert not CellSample.objects.filter(host=host).exists()


def test_an_answer_for_another_host_is_dropped(host_factory, td_host, probe_root) -> None:
    other = host_factory("other", uri=TEST_URI, worker_queue="host.other")
    sample = take_sample("td", TEST_URI, "host.td", probe=True)
    result = vm_sampling.store_message(other.pk, sample.to_message())
    assert result.error == "a sample of host 'td' arrived for 'other': dropped"
    assert not CellSample.objects.filter(host=other).exists()


def test_a_sample_survives_the_trip_through_json(td_host, probe_root) -> None:
    import json

    sample = take_sample("td", TEST_URI, "host.td", probe=True)
    assert sample.probe is not None and sample.probe.vm_memory
    assert HostSample.from_message(json.loads(json.dumps(sample.to_message()))) == sample


def test_a_libvirt_only_host_gets_free_memory_per_cell(host_factory) -> None:
    gc.collect()
    host = host_factory("plain", uri=TEST_URI)
    result = vm_sampling.sample_host(host.pk, probe=False)
    assert (result.source, result.cells, result.error) == ("libvirt", 2, "")
    rows = list(CellSample.objects.filter(host=host))
    assert {r.cell_id for r in rows} == {0, 1}
    assert all(r.free_kib and r.free_kib > 0 and r.numa_hit is None for r in rows)
    host.refresh_from_db()
    assert host.last_sample_source == "libvirt" and host.numa_balancing is None


def test_an_unreachable_host_records_libvirts_message(host_factory) -> None:
    host = host_factory("down", uri="qemu+tcp://127.0.0.1:1/system")
    result = vm_sampling.sample_host(host.pk, probe=False)
    assert result.error.startswith("libvirt: ")
    assert not CellSample.objects.filter(host=host).exists()
    host.refresh_from_db()
    assert host.last_sample_error.startswith("libvirt: ")


# --- rollups and retention -----------------------------------------------------------------


def fill(host: Host, start, minutes: int, *, per_minute: int = 600, cells=(0, 1)) -> None:
    """One sample a minute, numa_hit growing by *per_minute*; deltas derived by the service."""
    for m in range(minutes):
        taken = start + timedelta(minutes=m)
        sampling.store_cell_samples(
            host,
            taken,
            SampleSource.PROBE,
            free_kib=dict.fromkeys(cells, 1024 * (100 + m)),
            counters={
                c: {
                    "numa_hit": 1000 + m * per_minute,
                    "numa_miss": 0,
                    "numa_foreign": 0,
                    "interleave_hit": 0,
                    "local_node": 1000 + m * per_minute,
                    "other_node": m,
                }
                for c in cells
            },
            boot_time=1,
        )


BASE = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


def test_rollup_sums_closed_buckets_exactly_and_only_once(host_factory) -> None:
    host = host_factory("r1")
    fill(host, BASE, 40)  # 00:00 .. 00:39
    made = rollups.rollup_host(host, now=BASE + timedelta(minutes=41))
    # Closed buckets: 00:00 and 00:15 for two cells; 00:30 is still open.
    assert made == 4
    first = CellRollup.objects.get(host=host, cell_id=0, bucket_start=BASE)
    assert first.samples == 15
    assert first.covered_s == 14 * 60  # the first sample has no interval
    assert first.numa_hit_delta == 14 * 600
    assert first.free_kib_avg == 1024 * 107  # mean of 100..114 MiB
    second = CellRollup.objects.get(host=host, cell_id=0, bucket_start=BASE + timedelta(minutes=15))
    assert second.covered_s == 15 * 60 and second.numa_hit_delta == 15 * 600
    assert rollups.rollup_host(host, now=BASE + timedelta(minutes=41)) == 0  # idempotent
    assert rollups.rollup_host(host, now=BASE + timedelta(minutes=46)) == 2


def test_raw_samples_go_after_48h_only_once_rolled_up(host_factory, settings) -> None:
    host = host_factory("r2")
    fill(host, BASE, 30, cells=(0,))
    now = BASE + timedelta(hours=49)
    result = rollups.rollup_and_prune(now)
    assert result.rollups_made == 2
    assert result.raw_deleted == 30
    assert CellRollup.objects.filter(host=host).count() == 2

    # A host whose rollup has not happened (e.g. all samples in the open bucket) keeps them.
    fresh = host_factory("r3")
    fill(fresh, now - timedelta(minutes=5), 3, cells=(0,))
    rollups.rollup_and_prune(now)
    assert CellSample.objects.filter(host=fresh).count() == 3

    old = rollups.rollup_and_prune(BASE + timedelta(days=settings.NUMAPORTAL_ROLLUP_DAYS + 1))
    assert old.rollups_deleted >= 2
    assert not CellRollup.objects.filter(host=host).exists()


def test_history_from_raw_and_from_rollups_agrees(host_factory) -> None:
    host = host_factory("r4")
    fill(host, BASE, 120, cells=(0,))
    now = BASE + timedelta(minutes=121)
    raw = history.history(host, "24h", now=now)
    values = [v for v in raw.rates.values["numa_hit"][0] if v is not None]
    assert values and all(v == pytest.approx(10.0) for v in values)  # 600 pages / 60 s
    ratios = [v for v in raw.rates.values["local_ratio"][0] if v is not None]
    assert all(99 < r < 100 for r in ratios)  # other_node grew by 1 a minute

    rollups.rollup_host(host, now=now)
    rolled = history.history(host, "7d", now=now)
    rates = [v for v in rolled.rates.values["numa_hit"][0] if v is not None]
    assert rates and all(v == pytest.approx(10.0) for v in rates)
    assert rolled.has_counters


def test_sample_all_hosts_routes_probe_hosts_to_their_own_queue(host_factory) -> None:
    """The message really lands in Redis on the host's queue (nothing consumes it here)."""
    import base64
    import json

    import redis
    from django.conf import settings

    queue = f"host.test-{uuid.uuid4().hex[:8]}"
    on_host = host_factory("hv1", worker_queue=queue)
    host_factory("off", enabled=False, worker_queue=queue)
    gone = host_factory("gone", worker_queue=queue)
    gone.removed_at = timezone.now()
    gone.save()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        assert requests.sample_enabled_hosts() == 1
        messages = [json.loads(m) for m in client.lrange(queue, 0, -1)]
    finally:
        client.delete(queue)
    assert len(messages) == 1
    headers = messages[0]["headers"]
    assert headers["task"] == "hosts.tasks.probe_host"
    # Names, not database ids: the on-host worker has no database.
    assert headers["argsrepr"] == repr(["hv1", on_host.uri, queue])
    assert headers["expires"]  # a sample nobody ran within the interval is dropped
    # Its answer is stored by a central worker: the link names the central queue.
    body = json.loads(base64.b64decode(messages[0]["body"]))
    (link,) = body[2]["callbacks"]
    assert link["task"] == "vms.tasks.store_sample"
    assert link["args"] == [on_host.pk] and link["options"]["queue"] == "celery"
