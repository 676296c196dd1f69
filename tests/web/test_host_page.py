"""The host page with the Django test client: the topology diagram, lscpu-like summary,
memory table and distance matrix on every capabilities fixture, a host not synced yet,
its VM table and VM memory in pages, a many-cell host whose cell drawings load when opened,
and its query count."""

from __future__ import annotations

import gzip
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hosts.models import Host
from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.topology import parse_capabilities
from tests.web.diagram_xml import cores, diagram_tree, local, threads
from vms.models import VmCellMemory
from web.hosts.views import VM_PAGE_SIZE

pytestmark = [pytest.mark.web, pytest.mark.django_db]

CAPABILITIES = Path(__file__).parent.parent / "fixtures" / "capabilities"
FIXTURES = sorted(p.name for p in CAPABILITIES.glob("*.xml"))
HOSTILE_NAME = "<script>alert(1)</script>"


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


def test_host_page_pages_its_vm_table_and_vm_memory(ops_client, host_factory, vm_factory):
    host = host_factory("busy", worker_queue="host.busy")
    count = VM_PAGE_SIZE + 3
    for i in range(count):
        vm = vm_factory(host, f"vm{i:03d}", pins={0: str(i % 6)})
        VmCellMemory.objects.create(vm=vm, cell_id=0, sampled_at=timezone.now(), heap_mib=10)
    url = reverse("hosts:detail", args=[host.name])
    first = ops_client.get(url)
    page = first.content.decode()
    assert page.count('<tr data-vm="') == VM_PAGE_SIZE
    assert page.count("data-vm-memory=") == VM_PAGE_SIZE
    assert f"({count}; 1\u2013{VM_PAGE_SIZE} below)" in page  # en dash
    assert 'href="?page=2#vms"' in page
    assert 'href="?memory_page=2#vm-memory"' in page
    # the diagram still draws every VM: the legend lists them all
    legend = [el for el in diagram_tree(first).iter() if (el.get("class") or "") == "vm"]
    assert len(legend) == count

    second = ops_client.get(url, {"page": 2}).content.decode()
    assert second.count('<tr data-vm="') == 3
    assert ">vm052</a>" in second[second.index('<table class="grid vms">') :]
    assert second.count("data-vm-memory=") == VM_PAGE_SIZE  # its own pager stays on page 1
    # each pager keeps the other's page
    assert 'href="?page=2&amp;memory_page=2#vm-memory"' in second
    memory = ops_client.get(url, {"memory_page": 2}).content.decode()
    assert memory.count("data-vm-memory=") == 3
    assert 'href="?memory_page=2&amp;page=2#vms"' in memory


def five_cell_xml() -> str:
    """The 4-node fixture plus a memory-only cell 4: more than four cells, all collapsed."""
    xml = (CAPABILITIES / "x86_64-4node-basic.xml").read_text()
    extra = "<cell id='4'><memory unit='KiB'>8388608</memory><cpus num='0'></cpus></cell>"
    return xml.replace("<cells num='4'>", "<cells num='5'>").replace("</cells>", f"{extra}</cells>")


def test_collapsed_cells_load_their_drawing_when_opened(ops_client, host_factory, vm_factory):
    host = host_factory("fivecell", xml=five_cell_xml())
    vm_factory(host, HOSTILE_NAME, pins={0: "4", 1: "5"}, emulatorpin="4-7")
    topology = parse_capabilities(host.capabilities_xml)
    response = ops_client.get(reverse("hosts:detail", args=[host.name]))
    tree = diagram_tree(response)
    details = {int(el.get("data-cell")): el for el in tree.iter() if local(el.tag) == "details"}
    assert set(details) == set(topology.cell_ids)
    assert not threads(tree)  # no drawing is sent with the page
    assert "memory-only" in details[4].get("class").split()  # nothing to load: shown as it is
    drawn: dict[int, int] = {}
    for cell in topology.cells:
        body = next(el for el in details[cell.id] if "cell-body" in (el.get("class") or ""))
        assert details[cell.id].get("open") is None
        if not cell.cpus:
            assert body.get("hx-get") is None
            continue
        # htmx fetches the drawing the first time the cell opens; without JS, the link
        url = reverse("hosts:cell", args=[host.name, cell.id])
        assert body.get("hx-get") == url
        assert body.get("hx-trigger") == "toggle once from:closest details"
        assert next(el for el in body if local(el.tag) == "a").get("href") == url
        # the summary line is there without the drawing
        assert f"node {cell.id}" in "".join(details[cell.id].find("summary").itertext())
        fragment = ops_client.get(url)
        assert fragment.status_code == 200
        html = fragment.content.decode()
        assert "<html" not in html and "<script" not in html
        svg = ET.fromstring(html)
        assert svg.get("data-cell") == str(cell.id)
        for cpu in threads(svg):
            drawn[cpu] = cell.id
    assert drawn == {cpu: topology.node_of(cpu) for cpu in topology.cpu_ids}
    chips = ops_client.get(reverse("hosts:cell", args=[host.name, 1])).content.decode()
    assert "&lt;script&gt;" in chips and "E</text>" in chips  # the VM's chips and E marks
    assert ops_client.get(reverse("hosts:cell", args=[host.name, 9])).status_code == 404
    fresh = Host.objects.create(name="fresh", uri="test:///default")
    assert ops_client.get(reverse("hosts:cell", args=[fresh.name, 0])).status_code == 404


def test_pages_are_compressed_for_browsers_that_accept_gzip(ops_client, host_factory):
    host = host_factory("hv01")
    url = reverse("hosts:detail", args=[host.name])
    plain = ops_client.get(url)
    assert "Content-Encoding" not in plain
    packed = ops_client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate")
    assert packed["Content-Encoding"] == "gzip" and "Accept-Encoding" in packed["Vary"]
    page = gzip.decompress(packed.content).decode()
    assert str(packed.context["diagram"]) in page
    assert len(packed.content) < len(plain.content) / 3
    # the CSRF token (the one secret in a page) differs between responses: masked afresh
    tokens = {
        re.search(r'"X-CSRFToken": "([^"]+)"', body).group(1)
        for body in (page, plain.content.decode())
    }
    assert len(tokens) == 2
