"""The management commands for scripts on the portal machine: register_host, sync_host,
request_change, list_drift — thin over the services the pages and the API use, with their
words on refusal and a non-zero exit (CommandError). Hosts here use libvirt's in-process test
driver (test:///default: 2 cells x 8 CPUs, one running domain "test" with 2 vCPUs); the
--wait paths run a real worker (``worker_queue``)."""

from __future__ import annotations

import gc
import json
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from changes.models import Change
from hosts.models import Host
from vms.models import VirtualMachine

pytestmark = pytest.mark.web

TEST_URI = "test:///default"
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test driver's domain "test"
UNREACHABLE_URI = "qemu+tcp://127.0.0.1:1/system"


@pytest.fixture(autouse=True)
def fresh_test_driver():
    # The test driver keeps state while any connection to it lives (see tests/libvirt).
    gc.collect()
    yield
    gc.collect()


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as info:
        run(*args)
    return str(info.value)


# --- register_host -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_register_host_saves_it_checking_and_queues_its_test():
    out = run("register_host", "td", TEST_URI, "--worker-queue", "host.td")
    host = Host.objects.get(name="td")
    assert host.sync_status == Host.SyncStatus.CHECKING
    assert (host.uri, host.worker_queue, host.enabled) == (TEST_URI, "host.td", True)
    assert "Registered host 'td' at test:///default" in out
    assert "sync_host td --wait" in out


@pytest.mark.django_db
def test_register_host_disabled():
    run("register_host", "td", TEST_URI, "--disabled")
    assert Host.objects.get(name="td").enabled is False


@pytest.mark.django_db
def test_register_host_refusals_are_in_the_forms_words(host_factory):
    host_factory("hv01")
    assert "name:" in refused("register_host", "not a slug", TEST_URI)
    # The same words as the registration form (hosts.forms / hosts.services).
    duplicate = refused("register_host", "hv01", TEST_URI)
    assert "Not registering host 'hv01'" in duplicate and "already exists" in duplicate
    assert "reserved by the portal" in refused("register_host", "add", TEST_URI)
    bad_uri = refused("register_host", "x1", "file:///etc/passwd")
    assert bad_uri.startswith("Not registering host 'x1' at file:///etc/passwd: ")
    assert not Host.objects.filter(name__in=["x1", "add", "not a slug"]).exists()


# --- sync_host ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_host_queues_a_sync(host_factory):
    host_factory("hv01")
    out = run("sync_host", "hv01")
    assert "Host 'hv01': sync queued." in out
    assert Host.objects.get(name="hv01").sync_status == Host.SyncStatus.QUEUED


@pytest.mark.django_db
def test_sync_host_refuses_unknown_and_removed_hosts(host_factory):
    assert "No host 'nope'" in refused("sync_host", "nope")
    gone = host_factory("gone")
    Host.objects.filter(pk=gone.pk).update(removed_at=gone.last_sync_at)
    assert "No host 'gone'" in refused("sync_host", "gone")


@pytest.mark.django_db
def test_sync_host_wait_without_a_worker_says_so(host_factory, settings):
    settings.NUMAPORTAL_CENTRAL_QUEUE = f"nobody-{uuid.uuid4().hex[:8]}"
    host_factory("hv01")
    # Not committed (the test's transaction): nothing is even queued, as with no worker.
    message = refused("sync_host", "hv01", "--wait", "1")
    assert "still 'sync queued' after 1 s" in message and "worker" in message


@pytest.mark.django_db(transaction=True)
def test_register_then_sync_with_a_worker(worker_queue):
    run("register_host", "td", TEST_URI)
    out = run("sync_host", "td", "--wait", "60")
    assert "Host 'td' in sync: 1 VMs, 16 CPUs (test:///default)." in out
    assert VirtualMachine.objects.filter(host__name="td", uuid=TEST_UUID).exists()


@pytest.mark.django_db(transaction=True)
def test_sync_host_wait_reports_libvirts_words(worker_queue):
    Host.objects.create(name="far", uri=UNREACHABLE_URI, sync_status=Host.SyncStatus.OK)
    message = refused("sync_host", "far", "--wait", "60")
    assert message.startswith("Host 'far': sync failed: ")
    assert Host.objects.get(name="far").last_error in message
    assert "127.0.0.1" in message or "refused" in message.lower()


# --- request_change ----------------------------------------------------------------------------


@pytest.fixture
def test_driver_vm(host_factory, vm_factory):
    host = host_factory("td", uri=TEST_URI)
    return vm_factory(host, "test", uuid=uuid.UUID(TEST_UUID), vcpus=2)


def change_args(**overrides: str) -> list[str]:
    args = {
        "--host": "td",
        "--vm": TEST_UUID,
        "--kind": "vcpupin",
        "--params": json.dumps({"vcpu": 0, "cpuset": "1"}),
        "--scope": "live",
        "--reason": "from a script",
        "--user": "op",
        **overrides,
    }
    return ["request_change", *[part for pair in args.items() for part in pair]]


@pytest.mark.django_db
def test_request_change_records_it_queued(test_driver_vm, operator_user, enqueued):
    out = run(*change_args(**{"--vm": "test"}))  # by name
    change = Change.objects.get()
    assert (change.kind, change.params, change.scope) == (
        "vcpupin",
        {"vcpu": 0, "cpuset": "1"},
        "live",
    )
    assert (change.actor_name, change.reason, change.vm_id) == (
        "op",
        "from a script",
        test_driver_vm.pk,
    )
    assert change.status == Change.Status.QUEUED
    assert f"Change {change.id}: vcpupin" in out and "queued" in out


@pytest.mark.django_db
def test_request_change_refusals(test_driver_vm, operator_user, viewer, vm_factory, enqueued):
    assert "No active user 'ghost'" in refused(*change_args(**{"--user": "ghost"}))
    # The service's role check and words.
    assert "operator role required" in refused(*change_args(**{"--user": "viewer"}))
    assert "No host 'nope'" in refused(*change_args(**{"--host": "nope"}))
    assert "No VM 'nope' on host 'td'" in refused(*change_args(**{"--vm": "nope"}))
    assert "not JSON" in refused(*change_args(**{"--params": "{vcpu: 0"}))
    assert "JSON object" in refused(*change_args(**{"--params": "[0]"}))
    # The kind's validation, keyed by the form's fields.
    bad = refused(*change_args(**{"--params": json.dumps({"vcpu": 0, "cpuset": "99"})}))
    assert bad.startswith("Change of test on td refused: cpuset: ")
    blank = refused(*change_args(**{"--reason": " "}))
    assert "reason: " in blank
    assert "scope" in refused(*change_args(**{"--scope": "sometimes"}))
    vm_factory(test_driver_vm.host, "test", uuid=uuid.uuid4())
    assert "give its UUID" in refused(*change_args(**{"--vm": "test"}))
    assert not Change.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_request_change_wait_with_a_worker(worker_queue, operator_user):
    run("register_host", "td", TEST_URI)
    run("sync_host", "td", "--wait", "60")
    emulatorpin = {"--kind": "emulatorpin", "--params": json.dumps({"cpuset": "0"})}
    out = run(*change_args(**emulatorpin, **{"--wait": "60"}))
    change = Change.objects.get()
    assert change.status == Change.Status.SUCCEEDED, change.error
    assert f"Change {change.id} succeeded." in out
    assert change.after["live_tuning"]["emulatorpin"] == "0"
    # The test driver cannot pin a vCPU live: the change fails, in libvirt's words.
    message = refused(*change_args(**{"--wait": "60"}))
    failed = Change.objects.get(kind="vcpupin")
    assert failed.status == Change.Status.FAILED
    assert message == f"Change {failed.id} failed: {failed.error}"
    assert "unsupported flags" in message


# --- list_drift --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_drift_shows_what_the_pages_show(host_factory, vm_factory):
    hv1, hv2 = host_factory("hv01"), host_factory("hv02")
    vm_factory(hv1, "clean")
    vm_factory(hv1, "db01", drift=True, drift_detail="vCPU 0 pinned to 1 live, 0-23 in config")
    vm_factory(
        hv2,
        "web01",
        changed_outside=True,
        changed_outside_detail="live: vCPU 0 pin 1 -> 2 since change 42",
    )
    vm_factory(hv2, "old", drift=True, gone_at=hv2.last_sync_at)
    out = run("list_drift")
    assert "hv01 db01 " in out and "live-only: lost at next shutdown" in out
    assert "    vCPU 0 pinned to 1 live, 0-23 in config" in out
    assert "hv02 web01 " in out and "changed outside the portal" in out
    assert "clean" not in out and " old " not in out
    assert out.rstrip().endswith("2 VMs with drift.")
    only = run("list_drift", "--host", "hv02")
    assert "db01" not in only and "web01" in only and "1 VM with drift on hv02." in only
    assert "drift on 2 VMs" in refused("list_drift", "--check")
    assert "No host 'nope'" in refused("list_drift", "--host", "nope")


@pytest.mark.django_db
def test_list_drift_without_drift(host_factory, vm_factory):
    vm_factory(host_factory("hv01"), "clean")
    assert run("list_drift", "--check").strip() == "0 VMs with drift."
