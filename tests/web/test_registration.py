"""Registering a host through the services and the admin: validated in the request (hostile
URIs, duplicate names), saved "checking the connection", and tested then synced by the worker
(``vms.tasks.check_host``, run here in-process as the worker would), with libvirt's answer or
refusal recorded on the host. A real worker and a silent endpoint: ``test_register_async``.
"""

from __future__ import annotations

import gc
import time

import pytest
from django.core.exceptions import ValidationError

from hosts import services
from hosts.models import Host
from numaportal.virt.connection_check import check_connection
from numaportal.virt.errors import HostUnreachable, InvalidURI
from tests.silent_endpoint import SilentEndpoint
from vms import requests, sync
from vms import tasks as vm_tasks

pytestmark = pytest.mark.web

TEST_URI = "test:///default"
UNREACHABLE_URI = "qemu+tcp://127.0.0.1:1/system"


@pytest.fixture(autouse=True)
def fresh_test_driver():
    # The test driver keeps state while any connection to it lives (see tests/libvirt).
    gc.collect()
    yield
    gc.collect()


def make_host(name: str = "t1", uri: str = TEST_URI, **kwargs) -> Host:
    return Host.objects.create(name=name, uri=uri, **kwargs)


# --- registration --------------------------------------------------------------------------


@pytest.mark.django_db
def test_register_refuses_hostile_uri():
    with pytest.raises(InvalidURI, match="transport 'ext' is not allowed"):
        requests.register_host(name="evil", uri="qemu+ext:///system?command=/bin/sh")
    assert not Host.objects.exists()


@pytest.mark.django_db
def test_register_saves_an_unreachable_host_and_its_test_records_libvirts_message(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        host = requests.register_host(name="far", uri=UNREACHABLE_URI)
    assert host.sync_status == Host.SyncStatus.CHECKING and host.sync_task_id
    assert len(callbacks) == 1  # nothing contacted the host yet: the test is queued

    host = sync.check_and_sync(host.pk)  # what the worker runs
    assert host.sync_status == Host.SyncStatus.CHECK_FAILED
    assert host.last_error == "unable to connect to server at '127.0.0.1:1': Connection refused"
    assert host.check_answer.endswith(": no answer")
    assert Host.objects.filter(name="far").exists()  # kept, with the reason, for a retry
    # not synced nor sampled by the sweeps until a test passes
    assert requests.sync_enabled_hosts() == 0
    assert requests.sample_enabled_hosts() == 0


@pytest.mark.django_db
def test_register_saves_a_good_host_tests_it_then_syncs(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        host = requests.register_host(name="lab2", uri="TEST:///default")
    assert host.uri == "test:///default"  # normalised
    assert host.enabled and host.sync_status == Host.SyncStatus.CHECKING
    assert len(callbacks) == 1

    result = vm_tasks.check_host(host.pk)  # what the worker runs
    assert result == {"host": "lab2", "status": "ok", "error": ""}
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.OK, host.last_error
    assert "answered in" in host.check_answer and "2 NUMA cells" in host.check_answer
    assert host.vms.count() == 1


@pytest.mark.django_db
def test_a_test_that_no_longer_applies_is_not_recorded(monkeypatch):
    host = make_host("far", uri=UNREACHABLE_URI, sync_status=Host.SyncStatus.CHECKING)

    def forgotten_meanwhile(uri):
        assert services.remove_host(Host.objects.get(pk=host.pk))  # never connected: forgotten
        raise HostUnreachable("Connection refused")

    monkeypatch.setattr(services, "run_connection_test", forgotten_meanwhile)
    assert vm_tasks.check_host(host.pk)["host"] == "far"  # no crash on the vanished row
    assert not Host.objects.exists()

    moved = make_host("moved", uri=UNREACHABLE_URI, sync_status=Host.SyncStatus.CHECKING)

    def uri_changed_meanwhile(uri):
        Host.objects.filter(pk=moved.pk).update(uri=TEST_URI)  # the admin queued a new test
        return check_connection(TEST_URI, timeout=30)

    monkeypatch.setattr(services, "run_connection_test", uri_changed_meanwhile)
    sync.check_and_sync(moved.pk)
    moved.refresh_from_db()
    # the answer was about the old URI: neither recorded nor followed by a sync
    assert (moved.sync_status, moved.check_answer) == (Host.SyncStatus.CHECKING, "")


@pytest.mark.django_db
def test_a_refused_broker_fails_the_connection_test_instead_of_checking_forever(
    django_capture_on_commit_callbacks, monkeypatch
):
    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(vm_tasks.check_host, "apply_async", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        host = requests.register_host(name="lab2", uri=TEST_URI)
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.CHECK_FAILED
    assert host.last_error == (
        "could not queue the connection test: the task queue (Redis) is not answering: nothing "
        "was queued (broker down)"
    )


@pytest.mark.django_db
def test_register_refuses_duplicates_by_field():
    requests.register_host(name="one", uri=TEST_URI, queue_first_sync=False)
    with pytest.raises(ValidationError) as excinfo:
        requests.register_host(name="one", uri=TEST_URI)
    assert set(excinfo.value.message_dict) == {"name", "uri"}
    assert "exists already" in excinfo.value.message_dict["name"][0]
    assert "'one' already uses test:///default" in excinfo.value.message_dict["uri"][0]
    with pytest.raises(ValidationError) as excinfo:
        requests.register_host(name="not a slug!", uri=UNREACHABLE_URI)
    assert set(excinfo.value.message_dict) == {"name"}


@pytest.mark.django_db
def test_removed_host_frees_its_uri_but_not_its_name():
    host = requests.register_host(name="old", uri=TEST_URI, queue_first_sync=False)
    services.remove_host(host)
    with pytest.raises(ValidationError, match="removed host"):
        requests.register_host(name="old", uri=TEST_URI)
    assert requests.register_host(name="new", uri=TEST_URI, queue_first_sync=False).pk


# --- admin ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_add_refuses_a_hostile_uri(admin_client):
    response = admin_client.post(
        "/admin/hosts/host/add/",
        {"name": "h1", "uri": "qemu+ext:///system?command=/bin/sh", "enabled": "on"},
    )
    assert response.status_code == 200
    assert "transport &#x27;ext&#x27; is not allowed" in response.content.decode()
    assert not Host.objects.exists()


@pytest.mark.django_db
def test_admin_add_never_contacts_the_host_in_the_request(
    admin_client, settings, django_capture_on_commit_callbacks
):
    # Issue 14: the admin's host form tried the connection inside the request, like the page.
    settings.NUMAPORTAL_LIBVIRT_TIMEOUT = 5
    with SilentEndpoint() as endpoint:
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = admin_client.post(
                "/admin/hosts/host/add/", {"name": "h1", "uri": endpoint.uri, "enabled": "on"}
            )
        elapsed = time.monotonic() - started
        assert endpoint.accepted == 0  # nobody connected: the test is a worker's, later
    assert response.status_code == 302 and elapsed < settings.NUMAPORTAL_LIBVIRT_TIMEOUT
    host = Host.objects.get(name="h1")
    assert host.sync_status == Host.SyncStatus.CHECKING
    assert len(callbacks) == 1


@pytest.mark.django_db
def test_admin_add_registers_and_queues_the_connection_test(
    admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            "/admin/hosts/host/add/", {"name": "h1", "uri": "TEST:///default", "enabled": "on"}
        )
    assert response.status_code == 302
    host = Host.objects.get(name="h1")
    assert host.uri == TEST_URI and host.sync_status == Host.SyncStatus.CHECKING
    assert len(callbacks) == 1
    vm_tasks.check_host(host.pk)  # what the worker runs
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.OK, host.last_error
    change = admin_client.get(f"/admin/hosts/host/{host.pk}/change/").content.decode()
    assert "answered in" in change  # libvirt's answer to the test, read-only

    # a changed URI is tested again (on a worker), not tried in the request
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            f"/admin/hosts/host/{host.pk}/change/",
            {
                "uri": UNREACHABLE_URI,
                "enabled": "on",
                "worker_queue": "",
                # the read-only cells inline's management form
                "cells-TOTAL_FORMS": "0",
                "cells-INITIAL_FORMS": "0",
            },
        )
    assert response.status_code == 302, response.context["adminform"].form.errors
    host.refresh_from_db()
    assert host.uri == UNREACHABLE_URI and host.sync_status == Host.SyncStatus.CHECKING
    assert len(callbacks) == 1
