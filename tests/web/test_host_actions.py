"""Registering, syncing and removing a host through its pages: the add-host form refuses
command URIs, unreachable hosts and duplicate names; a test-driver host appears after its
first sync; "sync now" polls its status fragment; removal asks, then keeps the history."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hosts.models import Host
from tests.web.diagram_xml import diagram_tree, threads
from vms import sync
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


def test_add_host_refuses_an_unreachable_host_with_libvirts_message(ops_client, settings):
    settings.NUMAPORTAL_LIBVIRT_TIMEOUT = 5
    response = ops_client.post(
        reverse("hosts:add"), {"name": "far", "uri": "qemu+tcp://127.0.0.1:1/system"}
    )
    assert response.status_code == 200
    [message] = response.context["form"].errors["uri"]
    # libvirt's own words about the refused connection
    assert "127.0.0.1" in message
    assert message in response.content.decode().replace("&#x27;", "'")
    assert not Host.objects.filter(name="far").exists()


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
    assert host.sync_status == Host.SyncStatus.QUEUED
    assert len(callbacks) == 1  # the first sync goes to Celery once the row is committed

    # the host page follows the queued sync with htmx
    page = ops_client.get(host.get_absolute_url()).content.decode()
    assert 'hx-trigger="every 2s"' in page
    assert "sync queued" in page

    sync.sync_host(host.pk)  # what the worker runs
    dashboard = ops_client.get(reverse("hosts:list"))
    row = {h.name: h for h in dashboard.context["hosts"]}["testdrv"]
    assert row.sync_status == Host.SyncStatus.OK
    assert row.cell_count == 2 and row.cpu_count == 16
    assert row.vm_count == 1

    detail = ops_client.get(host.get_absolute_url())
    page = detail.content.decode()
    assert 'hx-trigger="every 2s"' not in page
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
