"""Inventory sync end to end: services, database and a real worker (registering a host:
``test_registration``).

Hosts here use libvirt's in-process test driver (test:///default: 2 cells x 8 CPUs, one
running domain "test" with 2 vCPUs) and a port nothing listens on for an unreachable host.
"""

from __future__ import annotations

import dataclasses
import gc
import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hosts import services
from hosts.models import Cell, Host, PhysicalCpu
from numaportal.virt.connection import open_connection
from numaportal.virt.inventory import HostInventory, read_inventory
from vms import requests, sync
from vms import tasks as vm_tasks
from vms.models import VcpuPin, VirtualMachine
from web import tasks as portal_tasks

pytestmark = pytest.mark.web

TEST_URI = "test:///default"
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
UNREACHABLE_URI = "qemu+tcp://127.0.0.1:1/system"


@pytest.fixture(autouse=True)
def fresh_test_driver():
    # The test driver keeps state while any connection to it lives (see tests/libvirt).
    gc.collect()
    yield
    gc.collect()


@pytest.fixture
def test_inventory() -> HostInventory:
    conn = open_connection(TEST_URI)
    try:
        return read_inventory(conn)
    finally:
        conn.close()


def make_host(name: str = "t1", uri: str = TEST_URI, **kwargs) -> Host:
    return Host.objects.create(name=name, uri=uri, **kwargs)


# --- sync ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_test_driver_end_to_end():
    host = make_host()
    result = sync.sync_host(host.pk)
    host.refresh_from_db()
    assert result.sync_status == host.sync_status == Host.SyncStatus.OK
    assert host.last_error == ""
    assert host.last_sync_at == host.last_sync_ok_at is not None
    assert host.hypervisor.startswith("TEST")
    assert host.arch == "i686"
    assert Cell.objects.filter(host=host).count() == 2
    assert PhysicalCpu.objects.filter(host=host).count() == 16
    cells = {c.cell_id: c for c in host.cells.all()}
    assert (cells[0].memory_kib, cells[0].free_kib) == (2097152, 2048)
    assert set(cells[1].cpus.values_list("cpu_id", flat=True)) == set(range(8, 16))

    vm = VirtualMachine.objects.get(host=host)
    assert (vm.name, str(vm.uuid), vm.state) == ("test", TEST_UUID, "running")
    assert (vm.vcpu_max_config, vm.vcpu_current_config) == (2, 2)
    assert (vm.vcpu_max_live, vm.vcpu_current_live) == (2, 2)
    assert vm.pinning == VirtualMachine.Pinning.UNPINNED
    # Unpinned: its vCPUs (affinity 0-7 in the test driver's 8-wide maps) run on cell 0.
    assert vm.cells == "0"
    assert not vm.drift and vm.drift_detail == ""
    assert vm.tuning_live["domain_id"] == 1 and vm.tuning_config["domain_id"] is None
    assert vm.last_seen_at == host.last_sync_at and vm.gone_at is None
    pins = list(vm.vcpus.order_by("vcpu"))
    assert [(p.vcpu, p.online, p.state, p.pin_live, p.pin_config) for p in pins] == [
        (0, True, "running", "", ""),
        (1, True, "running", "", ""),
    ]
    assert all(p.affinity == "0-7" and p.last_cpu is not None for p in pins)


@pytest.mark.django_db
def test_sync_twice_keeps_row_ids():
    host = make_host()
    sync.sync_host(host.pk)
    ids = (
        set(Cell.objects.values_list("pk", flat=True)),
        set(PhysicalCpu.objects.values_list("pk", flat=True)),
        set(VirtualMachine.objects.values_list("pk", flat=True)),
        set(VcpuPin.objects.values_list("pk", flat=True)),
    )
    sync.sync_host(host.pk)
    assert ids == (
        set(Cell.objects.values_list("pk", flat=True)),
        set(PhysicalCpu.objects.values_list("pk", flat=True)),
        set(VirtualMachine.objects.values_list("pk", flat=True)),
        set(VcpuPin.objects.values_list("pk", flat=True)),
    )


@pytest.mark.django_db
def test_live_pin_shows_as_pin_and_drift(test_inventory):
    host = make_host()
    (dom,) = test_inventory.domains
    live = dataclasses.replace(dom.live, vcpupin={1: frozenset({9})})
    pinned = dataclasses.replace(dom, live=live)
    sync.apply_inventory(host, dataclasses.replace(test_inventory, domains=(pinned,)))
    vm = VirtualMachine.objects.get(host=host)
    assert vm.pinning == VirtualMachine.Pinning.PARTLY
    assert vm.drift
    assert vm.drift_detail == "vCPU 1 pinned to 9 live, not pinned in config"
    row = vm.vcpus.get(vcpu=1)
    assert (row.pin_live, row.pin_config) == ("9", "")


@pytest.mark.django_db
def test_unreachable_host_records_libvirt_error_and_keeps_inventory(test_inventory):
    host = make_host()
    sync.apply_inventory(host, test_inventory)
    host.uri = UNREACHABLE_URI
    host.save()
    sync.sync_host(host.pk)  # does not raise
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.ERROR
    assert "Connection refused" in host.last_error and "127.0.0.1:1" in host.last_error
    assert host.last_sync_at > host.last_sync_ok_at
    # What the last good sync stored is still there, untouched.
    assert host.cells.count() == 2 and host.cpus.count() == 16
    vm = VirtualMachine.objects.get(host=host)
    assert vm.gone_at is None and vm.vcpus.count() == 2


@pytest.mark.django_db
def test_recovering_host_clears_the_error():
    host = make_host(uri=UNREACHABLE_URI)
    sync.sync_host(host.pk)
    host.uri = TEST_URI
    host.save()
    sync.sync_host(host.pk)
    host.refresh_from_db()
    assert (host.sync_status, host.last_error) == (Host.SyncStatus.OK, "")


@pytest.mark.django_db
def test_removed_host_is_not_synced():
    host = make_host()
    services.remove_host(host)
    sync.sync_host(host.pk)
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.NEVER
    assert not host.enabled and host.removed_at is not None


@pytest.mark.django_db
def test_vm_disappears_and_reappears_same_row(test_inventory):
    host = make_host()
    sync.apply_inventory(host, test_inventory)
    vm = VirtualMachine.objects.get(host=host)
    pin_ids = set(vm.vcpus.values_list("pk", flat=True))

    sync.apply_inventory(host, dataclasses.replace(test_inventory, domains=()))
    gone = VirtualMachine.objects.get(pk=vm.pk)
    assert gone.gone_at is not None and gone.is_gone
    assert gone.last_seen_at == vm.last_seen_at  # when it was last actually there
    assert set(gone.vcpus.values_list("pk", flat=True)) == pin_ids  # history kept
    assert not VirtualMachine.objects.present().filter(host=host).exists()

    sync.apply_inventory(host, test_inventory)
    back = VirtualMachine.objects.get(host=host)
    assert back.pk == vm.pk
    assert back.gone_at is None and back.last_seen_at > vm.last_seen_at
    assert set(back.vcpus.values_list("pk", flat=True)) == pin_ids


@pytest.mark.django_db
def test_lowered_maximum_drops_extra_vcpu_rows(test_inventory):
    host = make_host()
    (dom,) = test_inventory.domains
    bigger = dataclasses.replace(
        dom,
        config=dataclasses.replace(dom.config, vcpu_max=4),
        vcpucount=dataclasses.replace(dom.vcpucount, max_config=4),
    )
    sync.apply_inventory(host, dataclasses.replace(test_inventory, domains=(bigger,)))
    vm = VirtualMachine.objects.get(host=host)
    assert list(vm.vcpus.values_list("vcpu", "online")) == [
        (0, True),
        (1, True),
        (2, False),
        (3, False),
    ]
    sync.apply_inventory(host, test_inventory)
    assert list(vm.vcpus.values_list("vcpu", flat=True)) == [0, 1]


def synthetic(inventory: HostInventory, count: int) -> HostInventory:
    (dom,) = inventory.domains
    domains = tuple(
        dataclasses.replace(dom, name=f"vm{i}", uuid=str(uuid.UUID(int=i + 1)))
        for i in range(count)
    )
    return dataclasses.replace(inventory, domains=domains)


@pytest.mark.django_db
def test_apply_inventory_query_count_does_not_grow_with_vms(test_inventory):
    counts = {}
    for n in (1, 10):
        host = make_host(name=f"q{n}")
        sync.apply_inventory(host, synthetic(test_inventory, n))  # first: all inserts
        with CaptureQueriesContext(connection) as first_vm_gone:
            sync.apply_inventory(host, synthetic(test_inventory, n - 1 or 1))
        with CaptureQueriesContext(connection) as ctx:
            sync.apply_inventory(host, synthetic(test_inventory, n))  # updates
        counts[n] = (len(first_vm_gone), len(ctx))
    assert VirtualMachine.objects.filter(host__name="q10").count() == 10
    print("apply_inventory queries (one VM gone, all present):", counts)
    assert counts[1] == counts[10], counts
    assert counts[10][1] <= 16, counts


# --- queueing ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_request_sync_queues_on_commit_with_own_task_id(
    django_capture_on_commit_callbacks, monkeypatch, settings
):
    sent = []
    monkeypatch.setattr(vm_tasks.sync_host, "apply_async", lambda **kw: sent.append(kw))
    host = make_host(worker_queue="host.t1")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        requests.request_sync(host)
        host.refresh_from_db()
        assert host.sync_status == Host.SyncStatus.QUEUED
        assert sent == []  # nothing leaves before commit
    assert len(callbacks) == 1
    # A sync writes the database: central workers, not the host's own (host.t1, no database).
    # "Sync now" starts at once (no ETA), with the sync's own time limits.
    assert sent == [
        {
            "args": [host.pk],
            "task_id": host.sync_task_id,
            "queue": "celery",
            "ignore_result": True,
            "soft_time_limit": settings.NUMAPORTAL_SYNC_TIME_LIMIT,
            "time_limit": settings.NUMAPORTAL_SYNC_TIME_LIMIT
            + settings.NUMAPORTAL_HARD_LIMIT_GRACE,
        }
    ]
    uuid.UUID(host.sync_task_id)


@pytest.mark.django_db
def test_sync_enabled_hosts_queues_every_enabled_active_host(django_capture_on_commit_callbacks):
    make_host("good")
    make_host("broken", uri=UNREACHABLE_URI)
    make_host("off", enabled=False)
    services.remove_host(make_host("gone"))
    # Still booting (make run's NUMA lab): its start syncs it; a periodic sync would only fail.
    make_host("booting", sync_status=Host.SyncStatus.STARTING)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert requests.sync_enabled_hosts() == 2
    assert len(callbacks) == 2
    assert set(
        Host.objects.filter(sync_status=Host.SyncStatus.QUEUED).values_list("name", flat=True)
    ) == {"good", "broken"}
    assert Host.objects.get(name="booting").sync_status == Host.SyncStatus.STARTING


@pytest.mark.django_db
def test_broker_failure_is_recorded_not_left_queued(
    django_capture_on_commit_callbacks, monkeypatch
):
    def refuse(**_kw):
        raise ConnectionError("broker down")

    monkeypatch.setattr(vm_tasks.sync_host, "apply_async", refuse)
    host = make_host()
    with django_capture_on_commit_callbacks(execute=True):
        requests.request_sync(host)
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.ERROR
    assert "broker down" in host.last_error


@pytest.mark.django_db
def test_load_topology(test_inventory):
    host = make_host()
    assert services.load_topology(host) is None
    sync.apply_inventory(host, test_inventory)
    topology = services.load_topology(host)
    assert topology == test_inventory.topology


# --- the Celery tasks on a real worker -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_sync_task_on_a_worker(worker_queue):
    host = make_host()
    result = vm_tasks.sync_host.apply_async(args=[host.pk], queue=worker_queue)
    assert result.get(timeout=30) == {"host": "t1", "status": "ok", "error": ""}
    assert VirtualMachine.objects.get(host=host).name == "test"


@pytest.mark.django_db(transaction=True)
def test_periodic_task_syncs_good_host_despite_broken_one(worker_queue):
    # Both hosts route to the test worker's queue, as hosts with an on-host worker would.
    broken = make_host("broken", uri=UNREACHABLE_URI, worker_queue=worker_queue)
    good = make_host("good", worker_queue=worker_queue)
    queued = portal_tasks.sync_all_hosts.apply_async(queue=worker_queue).get(timeout=30)
    assert queued == 2
    for _ in range(100):
        statuses = set(Host.objects.values_list("sync_status", flat=True))
        if statuses <= {Host.SyncStatus.OK, Host.SyncStatus.ERROR}:
            break
        time.sleep(0.1)
    broken.refresh_from_db()
    good.refresh_from_db()
    assert broken.sync_status == Host.SyncStatus.ERROR
    assert "Connection refused" in broken.last_error
    assert good.sync_status == Host.SyncStatus.OK
    assert good.vms.count() == 1


@pytest.mark.django_db(transaction=True)
def test_sync_task_for_a_missing_host(worker_queue):
    result = vm_tasks.sync_host.apply_async(args=[999999], queue=worker_queue)
    assert result.get(timeout=30)["status"] == "missing"


# --- admin ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_cannot_delete_but_removes_keeping_history(admin_client, test_inventory):
    host = make_host()
    sync.apply_inventory(host, test_inventory)
    change = admin_client.get(f"/admin/hosts/host/{host.pk}/change/").content.decode()
    assert "Last sync" in change and "0-7" in change  # facts and the read-only cells inline
    assert admin_client.get(f"/admin/hosts/host/{host.pk}/delete/").status_code == 403
    page = admin_client.get("/admin/hosts/host/").content.decode()
    assert "remove_selected_hosts" in page and "delete_selected" not in page
    response = admin_client.post(
        "/admin/hosts/host/",
        {"action": "remove_selected_hosts", "_selected_action": [host.pk]},
    )
    assert response.status_code == 302
    host.refresh_from_db()
    assert host.is_removed and not host.enabled
    assert VirtualMachine.objects.filter(host=host).count() == 1


@pytest.mark.django_db
def test_admin_vm_pages_are_read_only(admin_client, test_inventory):
    host = make_host()
    sync.apply_inventory(host, test_inventory)
    vm = VirtualMachine.objects.get(host=host)
    listing = admin_client.get("/admin/vms/virtualmachine/?gone=no&cross_node__exact=0")
    assert listing.status_code == 200 and "test" in listing.content.decode()
    page = admin_client.get(f"/admin/vms/virtualmachine/{vm.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.get("/admin/vms/virtualmachine/add/").status_code == 403
