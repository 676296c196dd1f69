"""The VM pages with the Django test client: the VM detail (vcpuinfo strip, vcpucount,
tuning, drift / cross-node / gone warnings, 404) and the VM list (filters, badges, links,
query count)."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

pytestmark = [pytest.mark.web, pytest.mark.django_db]

# --- VM detail ----------------------------------------------------------------------------------


def test_vm_detail_shows_vcpuinfo_strip_vcpucount_and_tuning(ops_client, host_factory, vm_factory):
    host = host_factory("ibm3650", "x86_64-2node-24cpu-ht.xml")
    vm = vm_factory(
        host,
        "seed-vm",
        pins={0: "22", 1: "23"},
        vcpus=2,
        vcpu_max=4,
        last_cpus={0: 22, 1: 23},
        emulatorpin="18-23",
        emulatorpin_config="18-23",
        numatune_mode="strict",
        numatune_nodeset="1",
        memory_cells="1",
        memory_kib=8 * 1024 * 1024,
        current_memory_kib=4 * 1024 * 1024,
    )
    response = ops_client.get(vm.get_absolute_url())
    assert response.status_code == 200
    rows = {r.vcpu: r for r in response.context["vcpu_rows"]}
    assert rows[0].cpu == 22 and rows[0].affinity == "22"
    # one char per host CPU (24), 'y' where allowed: what `virsh vcpuinfo` prints
    assert rows[0].strip == "-" * 22 + "y-"
    assert rows[1].strip == "-" * 23 + "y"
    assert len(rows[2].strip) == 24 and rows[2].strip == "y" * 24  # offline, not pinned
    assert not rows[2].online
    page = response.content.decode()
    assert "<code>" + "-" * 22 + "y-</code>" in page
    # vcpucount: maximum/current x config/live
    assert re.search(
        r'data-row="maximum"><th>maximum</th><td data-col="config">4</td><td data-col="live">4',
        page,
    )
    assert re.search(
        r'data-row="current"><th>current</th><td data-col="config">2</td><td data-col="live">2',
        page,
    )
    assert 'data-numatune="mode">strict<' in page
    assert 'data-numatune="nodeset">1<' in page
    assert "18-23" in page
    assert "8.0 GiB maximum, 4.0 GiB current" in page
    assert "drift-warning" not in page
    assert "gone-notice" not in page
    assert "cross-node-notice" not in page


def test_vm_detail_warns_about_drift_cross_node_and_gone(ops_client, host_factory, vm_factory):
    host = host_factory("hv01")
    vm = vm_factory(
        host,
        "drifty",
        pins={0: "0", 1: "6"},
        drift=True,
        drift_detail="vCPU 1: live pin 6, config pin 0-5",
        gone_at="2024-05-01T10:00:00Z",
    )
    assert vm.cross_node
    page = ops_client.get(vm.get_absolute_url()).content.decode()
    assert 'id="drift-warning"' in page
    assert "Live-only: lost at next shutdown." in page
    assert "vCPU 1: live pin 6, config pin 0-5" in page
    assert 'id="cross-node-notice"' in page
    assert 'class="badge cross-node"' in page
    assert 'id="gone-notice"' in page


def test_vm_of_a_shut_off_vm_has_no_live_column(ops_client, host_factory, vm_factory):
    host = host_factory("hv01")
    vm = vm_factory(host, "off", running=False, pins={0: "3"}, vcpus=1)
    page = ops_client.get(vm.get_absolute_url()).content.decode()
    assert '<td data-col="live">—</td>' in page
    assert response_strip(page, 0) == "---y" + "-" * 20


def response_strip(page: str, vcpu: int) -> str:
    match = re.search(rf'data-vcpu="{vcpu}".*?data-col="strip"><code>([y-]+)</code>', page, re.S)
    assert match
    return match.group(1)


def test_unknown_vm_is_404(ops_client, host_factory):
    host = host_factory("hv01")
    response = ops_client.get(reverse("vms:detail", args=[host.name, uuid.uuid4()]))
    assert response.status_code == 404


# --- VM list ------------------------------------------------------------------------------------


@pytest.fixture
def fleet(host_factory, vm_factory):
    a = host_factory("hv-a")
    b = host_factory("hv-b", "x86_64-4node-basic.xml")
    return {
        "pinned": vm_factory(a, "pinned", pins={0: "0", 1: "1"}),
        "spans": vm_factory(a, "spans", pins={0: "0", 1: "6"}),
        "partly": vm_factory(b, "partly", pins={0: "0"}),
        "off": vm_factory(b, "off", running=False),
        "gone": vm_factory(b, "gone", gone_at="2024-01-01T00:00:00Z"),
    }


def listed(client, **params) -> set[str]:
    response = client.get(reverse("vms:list"), params)
    assert response.status_code == 200
    return {vm.name for vm in response.context["vms"]}


def test_vm_list_filters(ops_client, fleet):
    assert listed(ops_client) == {"pinned", "spans", "partly", "off"}
    assert listed(ops_client, include_gone="on") == {"pinned", "spans", "partly", "off", "gone"}
    assert listed(ops_client, host="hv-a") == {"pinned", "spans"}
    assert listed(ops_client, state="shut off") == {"off"}
    assert listed(ops_client, state="running", host="hv-b") == {"partly"}
    assert listed(ops_client, pinning="pinned") == {"pinned", "spans"}
    assert listed(ops_client, pinning="partly") == {"partly"}
    assert listed(ops_client, pinning="unpinned") == {"off"}
    assert listed(ops_client, cross_node="true") == {"spans", "partly", "off"}
    assert listed(ops_client, cross_node="false") == {"pinned"}
    assert listed(ops_client, name="PIN") == {"pinned"}


def test_vm_list_flags_cross_node_and_links(ops_client, fleet):
    page = ops_client.get(reverse("vms:list"), {"host": "hv-a"}).content.decode()
    spans, pinned = fleet["spans"], fleet["pinned"]
    row = re.search(rf'<tr data-vm="{spans.uuid}"[^>]*>.*?</tr>', page, re.S).group(0)
    assert 'class="badge cross-node"' in row
    row = re.search(rf'<tr data-vm="{pinned.uuid}"[^>]*>.*?</tr>', page, re.S).group(0)
    assert "badge cross-node" not in row
    assert spans.get_absolute_url() in page
    assert reverse("hosts:detail", args=["hv-a"]) in page


def test_vm_list_queries_do_not_grow_with_vms(ops_client, host_factory, vm_factory):
    host = host_factory("hv01")
    vm_factory(host, "one")
    ops_client.get(reverse("vms:list"))
    with CaptureQueriesContext(connection) as few:
        ops_client.get(reverse("vms:list"))
    for i in range(15):
        vm_factory(host, f"more{i}")
    with CaptureQueriesContext(connection) as many:
        ops_client.get(reverse("vms:list"))
    assert len(few.captured_queries) == len(many.captured_queries)
