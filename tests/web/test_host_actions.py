"""Registering, syncing and removing a host through its pages: the add-host form refuses
command URIs and duplicate names; an unreachable host is saved, and its connection test (on
a worker) shows libvirt's refusal on its page, with a retry and a removal that forgets it; a
test-driver host appears after its test and first sync; "sync now" polls its status
fragment; removal asks, then keeps the history."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hosts.models import Host
from tests.web.diagram_xml import diagram_tree, threads
from vms import tasks
from vms.models import VirtualMachine

pytestmark = [pytest.mark.web, pytest.mark.django_db]

# --- registering, syncing, removing ---------------------------------------------------------------


def test_add_host_refuses_a_command_uri(ops_client, tmp_path):
    response = ops_client.post(
        reverse("hosts:add"),
        {"name": "evil", "uri": "qemu+ext:///system?command=/bin/true", "enabled": "on"},
    )
    assert response.status_code == 200
    [message] = response.context["form"].errors["uri"]
    assert "transport 'ext' is not allowed" in message
    page = response.content.decode()
    assert "transport &#x27;ext&#x27; is not allowed" in page
    assert 'id="field-uri"' in page and "Traceback" not in page
    assert not Host.objects.filter(name="evil").exists()

    marker = tmp_path / "pwned"
    uri = f"qemu+ext:///system?command=/usr/bin/touch%20{marker}"
    again = ops_client.post(reverse("hosts:add"), {"name": "evil", "uri": uri})
    assert again.context["form"].errors["uri"]
    assert not marker.exists()
    assert not Host.objects.filter(name="evil").exists()


def test_add_host_refuses_a_keyfile_outside_the_uri_file_dir(ops_client, settings, tmp_path):
    settings.NUMAPORTAL_URI_FILE_DIR = str(tmp_path)
    (tmp_path / "id").symlink_to("/etc/shadow")
    for keyfile, got in (
        ("/etc/shadow", "got /etc/shadow"),
        (f"{tmp_path}/id", f"got {tmp_path}/id (resolves to /etc/shadow)"),
    ):
        uri = f"qemu+ssh://root@hv01.example.net/system?keyfile={keyfile}"
        response = ops_client.post(reverse("hosts:add"), {"name": "keys", "uri": uri})
        assert response.status_code == 200
        [message] = response.context["form"].errors["uri"]
        assert f"parameter 'keyfile' must name a file inside {tmp_path}: {got}" in message
        assert 'id="field-uri"' in response.content.decode()
        assert not Host.objects.filter(name="keys").exists()


def test_add_host_saves_an_unreachable_host_and_its_test_shows_libvirts_refusal(
    ops_client, settings, django_capture_on_commit_callbacks
):
    settings.NUMAPORTAL_LIBVIRT_TIMEOUT = 5
    uri = "qemu+tcp://127.0.0.1:1/system"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = ops_client.post(reverse("hosts:add"), {"name": "far", "uri": uri})
    host = Host.objects.get(name="far")
    assert response.status_code == 302 and response["Location"] == host.get_absolute_url()
    assert host.sync_status == Host.SyncStatus.CHECKING
    assert len(callbacks) == 1  # the connection test goes to a worker once committed

    tasks.check_host(host.pk)  # what the worker runs
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.CHECK_FAILED
    message = "unable to connect to server at '127.0.0.1:1': Connection refused"
    assert host.last_error == message  # libvirt's own words
    page = ops_client.get(host.get_absolute_url()).content.decode().replace("&#x27;", "'")
    assert "connection test failed" in page and message in page
    assert 'id="retry-check"' in page and 'id="forget-host"' in page
    assert 'hx-trigger="every 2s"' not in page
    listing = ops_client.get(reverse("hosts:list")).content.decode().replace("&#x27;", "'")
    assert '<span class="badge status-check_failed">connection test failed</span>' in listing
    assert message in listing


def test_a_failed_registration_is_retried_or_forgotten(
    ops_client, django_capture_on_commit_callbacks
):
    host = Host.objects.create(
        name="far",
        uri="qemu+tcp://127.0.0.1:1/system",
        sync_status=Host.SyncStatus.CHECK_FAILED,
        last_error="Connection refused",
    )
    # the retry (its own button, or "Sync now") tests the connection again: no in-process open
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        retried = ops_client.post(reverse("hosts:sync", args=[host.name]), HTTP_HX_REQUEST="true")
    assert len(callbacks) == 1
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.CHECKING
    assert "checking the connection…" in retried.content.decode()
    assert 'hx-trigger="every 2s"' in retried.content.decode()

    # removing a host that never connected forgets it: its name is free for a corrected URI
    host.sync_status = Host.SyncStatus.CHECK_FAILED
    host.save()
    confirm = ops_client.get(reverse("hosts:remove", args=[host.name])).content.decode()
    assert "never answered its connection test" in confirm and "forgets" in confirm
    response = ops_client.post(reverse("hosts:remove", args=[host.name]))
    assert response.status_code == 302
    assert not Host.objects.filter(name="far").exists()
    with django_capture_on_commit_callbacks(execute=False):
        again = ops_client.post(reverse("hosts:add"), {"name": "far", "uri": "test:///default"})
    assert again.status_code == 302
    assert Host.objects.get(name="far").sync_status == Host.SyncStatus.CHECKING


def test_add_host_refuses_a_duplicate_name(ops_client, host_factory):
    host_factory("hv01")
    response = ops_client.post(reverse("hosts:add"), {"name": "hv01", "uri": "test:///default"})
    assert response.status_code == 200
    assert response.context["form"].errors["name"]
    reserved = ops_client.post(reverse("hosts:add"), {"name": "add", "uri": "test:///default"})
    assert "reserved" in reserved.context["form"].errors["name"][0]


def test_add_test_driver_host_then_it_appears_after_its_first_sync(
    ops_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = ops_client.post(
            reverse("hosts:add"),
            {"name": "testdrv", "uri": "test:///default", "enabled": "on"},
        )
    host = Host.objects.get(name="testdrv")
    assert response.status_code == 302
    assert response["Location"] == host.get_absolute_url()
    assert host.sync_status == Host.SyncStatus.CHECKING
    assert len(callbacks) == 1  # the connection test goes to Celery once the row is committed

    # the host page follows the connection test with htmx
    page = ops_client.get(host.get_absolute_url()).content.decode()
    assert 'hx-trigger="every 2s"' in page
    assert "checking the connection…" in page

    tasks.check_host(host.pk)  # what the worker runs: the test, then the first sync
    dashboard = ops_client.get(reverse("hosts:list"))
    row = {h.name: h for h in dashboard.context["hosts"]}["testdrv"]
    assert row.sync_status == Host.SyncStatus.OK
    assert row.cell_count == 2 and row.cpu_count == 16
    assert row.vm_count == 1

    detail = ops_client.get(host.get_absolute_url())
    page = detail.content.decode()
    assert 'hx-trigger="every 2s"' not in page
    assert "answered in" in page and "libvirt" in page  # the connection test's answer
    assert len(threads(diagram_tree(detail))) == 16
    assert ">test</a>" in page  # the test driver's domain in the VM table

    vm = VirtualMachine.objects.get(host=host, name="test")
    vm_page = ops_client.get(vm.get_absolute_url())
    assert vm_page.status_code == 200
    assert all(len(r.strip) == 16 for r in vm_page.context["vcpu_rows"])


def test_sync_now_queues_and_the_status_fragment_polls(
    ops_client, host_factory, django_capture_on_commit_callbacks
):
    host = host_factory("hv01")
    url = reverse("hosts:sync", args=[host.name])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = ops_client.post(url, HTTP_HX_REQUEST="true")
    assert len(callbacks) == 1
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert 'id="sync-status"' in html
    assert 'hx-trigger="every 2s"' in html
    assert reverse("hosts:sync-status", args=[host.name]) in html

    status_url = reverse("hosts:sync-status", args=[host.name])
    polled = ops_client.get(status_url, {"polling": "1"})
    assert 'hx-trigger="every 2s"' in polled.content.decode()
    assert "HX-Refresh" not in polled

    Host.objects.filter(pk=host.pk).update(
        sync_status=Host.SyncStatus.ERROR, last_error="Cannot recv data"
    )
    done = ops_client.get(status_url, {"polling": "1"})
    assert done["HX-Refresh"] == "true"  # the page reloads to show the new state
    assert "Cannot recv data" in done.content.decode()
    assert 'hx-trigger="every 2s"' not in done.content.decode()

    # without htmx: redirect back to the host page
    with django_capture_on_commit_callbacks(execute=False):
        plain = ops_client.post(url)
    assert plain.status_code == 302 and plain["Location"] == host.get_absolute_url()
    assert ops_client.get(url).status_code == 405


def test_remove_host_asks_then_keeps_history(ops_client, host_factory, vm_factory):
    host = host_factory("hv01")
    vm = vm_factory(host, "keeper")
    url = reverse("hosts:remove", args=[host.name])
    confirm = ops_client.get(url)
    page = confirm.content.decode()
    assert confirm.status_code == 200
    assert "kept" in page and "1 VM " in page
    assert Host.objects.get(pk=host.pk).removed_at is None

    response = ops_client.post(url)
    assert response.status_code == 302 and response["Location"] == reverse("hosts:list")
    host.refresh_from_db()
    assert host.removed_at is not None
    assert VirtualMachine.objects.filter(pk=vm.pk).exists()
    assert "hv01" not in {h.name for h in ops_client.get(reverse("hosts:list")).context["hosts"]}
    # its pages stay readable, marked removed, without actions
    detail = ops_client.get(host.get_absolute_url()).content.decode()
    assert "Removed from the portal" in detail
    assert 'id="sync-now"' not in detail
    assert ops_client.get(vm.get_absolute_url()).status_code == 200
    assert ops_client.post(url).status_code == 404
    assert ops_client.post(reverse("hosts:sync", args=[host.name])).status_code == 404
