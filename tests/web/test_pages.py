"""Inventory pages with the Django test client: dashboard, host topology, VM list and detail."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hosts import services
from hosts.models import Host
from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.topology import parse_capabilities
from vms import sync
from vms.models import VirtualMachine

pytestmark = [pytest.mark.web, pytest.mark.django_db]

CAPABILITIES = Path(__file__).parent.parent / "fixtures" / "capabilities"
FIXTURES = sorted(p.name for p in CAPABILITIES.glob("*.xml"))
HOSTILE = "<script>alert('x')</script>&\"vm\""


def diagram_tree(response) -> ET.Element:
    """The diagram fragment of a host page, as XML (hosts.diagram emits well-formed XML)."""
    diagram = response.context["diagram"]
    assert diagram is not None
    assert str(diagram) in response.content.decode()
    return ET.fromstring(str(diagram))


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def threads(tree: ET.Element) -> dict[int, ET.Element]:
    return {
        int(el.get("data-cpu")): el
        for el in tree.iter()
        if local(el.tag) == "g" and "thread" in (el.get("class") or "").split()
    }


def cores(tree: ET.Element) -> list[ET.Element]:
    return [el for el in tree.iter() if local(el.tag) == "g" and (el.get("class") or "") == "core"]


def lscpu(page: str, key: str) -> str:
    match = re.search(rf'data-lscpu="{key}">([^<]*)<', page)
    assert match, key
    return match.group(1).strip()


# --- host page, every capabilities fixture ----------------------------------------------------


@pytest.mark.parametrize("fixture", FIXTURES)
def test_host_page_renders_every_cell_and_cpu(ops_client, host_factory, fixture):
    topology = parse_capabilities((CAPABILITIES / fixture).read_text())
    host = host_factory("hv-fixture", fixture)
    response = ops_client.get(reverse("hosts:detail", args=[host.name]))
    assert response.status_code == 200
    page = response.content.decode()

    tree = diagram_tree(response)
    cells = {int(el.get("data-cell")) for el in tree.iter() if local(el.tag) == "details"}
    assert cells == set(topology.cell_ids)
    drawn = threads(tree)
    assert set(drawn) == set(topology.cpu_ids)
    for cpu_id, el in drawn.items():
        assert int(el.get("data-cell")) == topology.node_of(cpu_id)
    # SMT siblings are drawn inside one core group, whatever their numbering.
    for core in cores(tree):
        inside = {int(t.get("data-cpu")) for t in core.iter() if t.get("data-cpu")}
        assert inside == set(parse_cpuset(core.get("data-cpus")))
        for cpu_id in inside:
            assert topology.cpu(cpu_id).siblings == inside

    # lscpu-like summary, the memory table and the distance matrix
    assert lscpu(page, "cpus") == str(len(topology.cpu_ids))
    assert lscpu(page, "numa_nodes") == str(len(topology.cells))
    for cell in topology.cells:
        assert f'data-lscpu-cell="{cell.id}"' in page
        assert f'<tr data-cell="{cell.id}">' in page
    assert response.context["chosen_cell"] == min(topology.cell_ids)


def test_amd_64_cpu_host_groups_siblings_0_and_32(ops_client, host_factory):
    host = host_factory("amd64", "x86_64-2node-64cpu-amd-smt.xml")
    response = ops_client.get(reverse("hosts:detail", args=[host.name]))
    tree = diagram_tree(response)
    assert len(threads(tree)) == 64
    assert tree.get("data-cpus") == "64"
    groups = {core.get("data-cpus"): core for core in cores(tree)}
    assert len(groups) == 32
    core0 = groups["0,32"]
    assert {int(t.get("data-cpu")) for t in core0.iter() if t.get("data-cpu")} == {0, 32}
    assert groups["16,48"].get("data-socket") == "1"
    page = response.content.decode()
    assert lscpu(page, "threads_per_core") == "2"
    assert lscpu(page, "cores_per_socket") == "16"
    assert lscpu(page, "sockets") == "2"
    assert "0-15,32-47" in page and "16-31,48-63" in page


def test_lscpu_summary_of_the_seed_shaped_host(ops_client, host_factory):
    host = host_factory("ibm3650", "x86_64-2node-24cpu-ht.xml")
    page = ops_client.get(reverse("hosts:detail", args=[host.name])).content.decode()
    assert lscpu(page, "arch") == "x86_64"
    assert lscpu(page, "cpus") == "24"
    assert lscpu(page, "sockets") == "2"
    assert lscpu(page, "cores_per_socket") == "6"
    assert lscpu(page, "threads_per_core") == "2"
    assert lscpu(page, "memory") == "64.0 GiB"
    node1 = re.search(r'data-lscpu-cell="1"><span class="cpuset">([^<]*)<', page)
    assert node1 and node1.group(1) == "6-11,18-23"


def test_lscpu_summary_with_model_vendor_and_a_memory_only_cell(ops_client, host_factory):
    host = host_factory("cxl", "x86_64-2node-memory-only-cell.xml")
    page = ops_client.get(reverse("hosts:detail", args=[host.name])).content.decode()
    assert lscpu(page, "cpu_model") == "Icelake-Server"
    assert lscpu(page, "vendor") == "Intel"
    assert "(memory only)" in page
    # memory per cell: total 64 GiB on the memory-only cell, a quarter free in the factory
    assert "64.0 GiB" in page and "16.0 GiB" in page


FOUR_NODE_DISTANCES = {0: (10, 16, 22, 22), 1: (16, 10, 22, 22), 2: (22, 22, 10, 16)}
FOUR_NODE_DISTANCES[3] = (22, 22, 16, 10)


def four_node_xml_with_distances() -> str:
    xml = (CAPABILITIES / "x86_64-4node-basic.xml").read_text()
    for cell, row in FOUR_NODE_DISTANCES.items():
        siblings = "".join(f"<sibling id='{i}' value='{v}'/>" for i, v in enumerate(row))
        xml = re.sub(
            rf"(<cell id='{cell}'>\s*<memory[^>]*>[^<]*</memory>)",
            rf"\1<distances>{siblings}</distances>",
            xml,
        )
    return xml


def test_distance_matrix_labels_local_neighbour_remote(ops_client, host_factory):
    host = host_factory("fournode", xml=four_node_xml_with_distances())
    url = reverse("hosts:detail", args=[host.name])
    response = ops_client.get(url, {"cell": 2})
    assert response.context["chosen_cell"] == 2
    kinds = {k["cell"]: k["kind"] for k in response.context["distance_kinds"]}
    assert kinds == {0: "remote", 1: "remote", 2: "local", 3: "neighbour"}
    page = response.content.decode()
    assert 'data-cell="3" data-kind="neighbour"' in page
    assert 'data-cell="0" data-kind="remote"' in page
    assert "cell 2: local" in page

    # the same through the htmx fragment, and a bogus cell falls back to the first one
    fragment = ops_client.get(reverse("hosts:distances", args=[host.name]), {"cell": 0})
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert "<html" not in html
    assert 'data-cell="1" data-kind="neighbour"' in html
    assert 'data-cell="2" data-kind="remote"' in html
    bogus = ops_client.get(url, {"cell": "99"})
    assert bogus.status_code == 200 and bogus.context["chosen_cell"] == 0


def test_host_without_topology_yet(ops_client):
    host = Host.objects.create(name="fresh", uri="test:///default")
    response = ops_client.get(reverse("hosts:detail", args=[host.name]))
    assert response.status_code == 200
    assert response.context["diagram"] is None
    assert "first successful sync" in response.content.decode()


# --- query counts -------------------------------------------------------------------------------


def _host_page_queries(client, host) -> int:
    url = reverse("hosts:detail", args=[host.name])
    client.get(url)  # warm the session/user caches of the test client
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_host_page_queries_do_not_grow_with_vms(ops_client, host_factory, vm_factory):
    few = host_factory("few")
    many = host_factory("many")
    for i in range(2):
        vm_factory(few, f"vm{i}", pins={0: str(i), 1: str(i + 12)}, emulatorpin="0-1")
    for i in range(20):
        vm_factory(many, f"vm{i}", pins={0: str(i % 24), 1: str((i + 6) % 24)}, emulatorpin="0")
    assert _host_page_queries(ops_client, few) == _host_page_queries(ops_client, many)


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


def test_host_page_vm_table(ops_client, host_factory, vm_factory):
    host = host_factory("hv01")
    vm_factory(host, "spans", pins={0: "0", 1: "6"}, drift=True, drift_detail="d")
    vm_factory(host, "gone-vm", gone_at="2024-01-01T00:00:00Z")
    page = ops_client.get(reverse("hosts:detail", args=[host.name])).content.decode()
    table = page[page.index('<table class="grid vms">') :]
    assert "spans" in table and "gone-vm" not in table
    assert 'class="badge cross-node"' in table
    assert 'class="badge drift"' in table
    assert "2/2" in table  # vCPUs live and config


# --- escaping -----------------------------------------------------------------------------------


def test_hostile_vm_name_is_escaped_everywhere(ops_client, host_factory, vm_factory):
    host = host_factory("hv01")
    vm = vm_factory(
        host,
        HOSTILE,
        pins={0: "0", 1: "6"},
        emulatorpin="1",
        memory_cells="0",
        drift=True,
        drift_detail=f"<img src=x onerror=alert(1)> {HOSTILE}",
    )
    pages = [
        ops_client.get(reverse("hosts:detail", args=[host.name])),
        ops_client.get(reverse("vms:list")),
        ops_client.get(vm.get_absolute_url()),
        ops_client.get(reverse("hosts:list")),
    ]
    for response in pages:
        page = response.content.decode()
        assert response.status_code == 200
        assert "<script>alert" not in page
        assert "<img src=x" not in page
    for response in pages[:3]:
        assert "&lt;script&gt;alert(" in response.content.decode()
    # the diagram is well-formed XML whose text holds the name as text, not markup
    tree = diagram_tree(pages[0])
    assert not [el for el in tree.iter() if local(el.tag) in {"script", "img"}]
    assert any(HOSTILE in (el.text or "") for el in tree.iter())


def test_hostile_host_error_is_escaped(ops_client, host_factory):
    host_factory("hv01", last_error="<script>alert(1)</script>", sync_status="error")
    page = ops_client.get(reverse("hosts:list")).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


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


def test_navigation_links_the_dashboard(ops_client):
    page = ops_client.get(reverse("home")).content.decode()
    assert f'href="{reverse("hosts:list")}"' in page
    assert f'href="{reverse("vms:list")}"' in page
