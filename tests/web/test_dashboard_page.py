"""The dashboard (hosts:list) with the Django test client: active hosts with their counts
and sync errors, its query count, and the navigation links to it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hosts import services
from hosts.models import Host

pytestmark = [pytest.mark.web, pytest.mark.django_db]

# --- query counts -------------------------------------------------------------------------------


def test_dashboard_queries_do_not_grow_with_hosts(ops_client, host_factory, vm_factory):
    url = reverse("hosts:list")
    first = host_factory("hv01")
    vm_factory(first, "a")
    ops_client.get(url)
    with CaptureQueriesContext(connection) as one:
        ops_client.get(url)
    for i in range(2, 7):
        host = host_factory(f"hv{i:02}", "x86_64-4node-basic.xml")
        vm_factory(host, "b", pins={0: "0", 1: "4"})
    with CaptureQueriesContext(connection) as six:
        response = ops_client.get(url)
    assert len(response.context["hosts"]) == 6
    assert len(one.captured_queries) == len(six.captured_queries)


# --- dashboard ----------------------------------------------------------------------------------


def test_dashboard_lists_active_hosts_with_counts(ops_client, host_factory, vm_factory):
    host = host_factory("hv01", last_error="")
    vm_factory(host, "inside", pins={0: "0", 1: "1"})
    vm_factory(host, "spans", pins={0: "0", 1: "6"})  # cells 0 and 1
    vm_factory(host, "away", gone_at="2024-01-01T00:00:00Z")
    broken = host_factory("hv02", "x86_64-4node-basic.xml")
    Host.objects.filter(pk=broken.pk).update(
        sync_status=Host.SyncStatus.ERROR, last_error="Cannot recv data: Connection reset"
    )
    removed = host_factory("hv03")
    services.remove_host(removed)

    response = ops_client.get(reverse("hosts:list"))
    rows = {h.name: h for h in response.context["hosts"]}
    assert set(rows) == {"hv01", "hv02"}
    assert rows["hv01"].cell_count == 2 and rows["hv01"].cpu_count == 24
    assert rows["hv01"].vm_count == 2  # the gone VM is not counted
    assert rows["hv01"].cross_node_count == 1
    assert rows["hv02"].cell_count == 4 and rows["hv02"].cpu_count == 16
    page = response.content.decode()
    assert 'data-cross-node-count="1"' in page
    assert "Cannot recv data: Connection reset" in page
    assert "sync failed" in page
    assert "8.0 GiB free of 32.0 GiB" in page  # hv01 cell 0: a quarter of 32 GiB free
    assert "hv03" not in page


def test_navigation_links_the_dashboard(ops_client):
    page = ops_client.get(reverse("home")).content.decode()
    assert f'href="{reverse("hosts:list")}"' in page
    assert f'href="{reverse("vms:list")}"' in page
