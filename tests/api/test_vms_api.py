"""``/api/v1/vms/``: the role matrix, the VM list page's filters (the same query string gives
the same VMs; a bad value is a 400, never a 500), a constant number of queries, and the VM
detail as the VM page shows it — against libvirt's test driver for vCPUs and pins, against
stored rows for memory per cell and locality.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from urllib.parse import urlencode

import libvirt
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.api.conftest import ROLES, TEST_URI, TEST_VM_NAME, TEST_VM_UUID, assert_conforms
from tests.querycount import assert_constant_queries
from tests.web.conftest import make_host, make_vm
from vms import sync
from vms.memory import memory_bar
from vms.models import VcpuPin, VirtualMachine, VmCellMemory, VmLocalitySample

pytestmark = [pytest.mark.api, pytest.mark.django_db]

LIST = "/api/v1/vms/"
READ = (401, 403, 200, 200, 200)
#: Nothing here writes: the roles are checked first (403), then the method (405).
WRITE = (401, 403, 403, 403, 405)


def detail(host: str, uuid) -> str:
    return f"/api/v1/vms/{host}/{uuid}/"


def driver_vm_url() -> str:
    return detail("td", TEST_VM_UUID)


# --- the role matrix --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_list(api, synced_host, role):
    response = api(role).get(LIST)
    assert response.status_code == READ[ROLES.index(role)], response.content
    if response.status_code == 200:
        body = response.json()
        assert body["count"] == 1
        assert [(v["host"], v["name"]) for v in body["results"]] == [("td", TEST_VM_NAME)]


@pytest.mark.parametrize("role", ROLES)
def test_detail(api, synced_host, role):
    response = api(role).get(driver_vm_url())
    assert response.status_code == READ[ROLES.index(role)], response.content
    if response.status_code == 200:
        assert response.json()["uuid"] == TEST_VM_UUID


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_no_writes(api, synced_host, role, method):
    for url in (LIST, driver_vm_url()):
        response = getattr(api(role), method)(url, {}, content_type="application/json")
        assert response.status_code == WRITE[ROLES.index(role)], (url, response.content)
    assert VirtualMachine.objects.count() == 1


@pytest.mark.parametrize("role", ["no_role"])
def test_refused_before_the_vm_is_looked_up(api, role):
    assert api(role).get(detail("nowhere", TEST_VM_UUID)).status_code == 403


def test_unknown_vm_is_404(viewer_api, synced_host):
    other = "00000000-0000-0000-0000-000000000001"
    assert viewer_api.get(detail("td", other)).status_code == 404
    assert viewer_api.get(detail("nowhere", TEST_VM_UUID)).status_code == 404


# --- the detail, from the test driver --------------------------------------------------------


@pytest.fixture
def pinned_test_vm(fresh_test_driver):
    """Domain "test" with vCPU 0 pinned live to CPU 3 (the test driver pins with flags 0,
    live only), then the host synced. The connection keeps the driver's state meanwhile."""
    from hosts.models import Host

    conn = libvirt.open(TEST_URI)
    dom = conn.lookupByName(TEST_VM_NAME)
    dom.pinVcpu(0, tuple(cpu == 3 for cpu in range(16)))
    host = Host.objects.create(name="td", uri=TEST_URI)
    sync.sync_host(host.pk)
    yield dom
    conn.close()


def test_detail_shows_what_libvirt_has(viewer_api, pinned_test_vm):
    response = viewer_api.get(driver_vm_url())
    assert_conforms(response, "/api/v1/vms/{host}/{uuid}/")
    body = response.json()
    vcpus, cpumaps = pinned_test_vm.vcpus()
    # virsh vcpuinfo: each vCPU's physical CPU and affinity, as libvirt reports them
    assert [row["vcpu"] for row in body["vcpuinfo"]] == [v[0] for v in vcpus]
    assert [row["cpu"] for row in body["vcpuinfo"]] == [v[3] for v in vcpus]
    for row, cpumap in zip(body["vcpuinfo"], cpumaps, strict=True):
        allowed = [cpu for cpu, yes in enumerate(cpumap) if yes]
        assert row["strip"][: len(cpumap)] == "".join("y" if y else "-" for y in cpumap)
        assert row["affinity"] == ("3" if allowed == [3] else f"{allowed[0]}-{allowed[-1]}")
        assert row["online"] is True and row["state"] == "running"
    # the pin: live only (the test driver does not write the config), so it is drift
    assert body["vcpuinfo"][0]["pin_live"] == "3" and body["vcpuinfo"][0]["pinned"] is True
    assert body["vcpuinfo"][0]["pin_config"] == ""
    assert body["pins"] == {"live": {"0": "3"}, "config": {}}
    assert body["pinning"] == "partly"
    assert body["drift"] is True
    assert "vCPU 0 pinned to 3 live" in body["drift_detail"]
    info = pinned_test_vm.info()  # state, max memory, memory, vCPUs, cpu time
    assert body["vcpucount"] == {
        "maximum": {"config": 2, "live": 2},
        "current": {"config": 2, "live": info[3]},
    }
    assert body["memory_kib"] == info[1]
    assert body["emulatorpin"] == {"live": "", "config": ""}
    assert body["numatune"] == {"mode": "", "nodeset": ""}
    assert body["memory"] is None and body["locality"] is None


def test_detail_is_the_vm_pages_rows(viewer_api, users, pinned_test_vm):
    page = Client()
    page.force_login(users["viewer"])
    context = page.get(reverse("vms:detail", args=["td", TEST_VM_UUID])).context
    body = viewer_api.get(driver_vm_url()).json()
    assert body["vcpuinfo"] == [asdict(row) for row in context["vcpu_rows"]]
    vm = context["vm"]
    rows = VcpuPin.objects.filter(vm=vm).order_by("vcpu")
    assert body["pins"]["live"] == {str(p.vcpu): p.pin_live for p in rows if p.pin_live}
    assert body["page"] == vm.get_absolute_url()
    assert body["locality_threshold"] == context["locality_threshold"]


def test_a_gone_vm_keeps_its_detail_and_leaves_the_list(viewer_api, synced_host):
    VirtualMachine.objects.update(gone_at=timezone.now())
    assert viewer_api.get(LIST).json()["count"] == 0
    assert viewer_api.get(LIST, {"include_gone": "on"}).json()["count"] == 1
    body = viewer_api.get(driver_vm_url()).json()
    assert body["gone_at"] is not None


# --- the detail: emulator pin, numatune, memory per cell, locality ------------------------------


@pytest.fixture
def sampled_vm():
    host = make_host("hv01")
    vm = make_vm(
        host,
        "db01",
        pins={0: "0", 1: "1"},
        vcpus=2,
        vcpu_max=4,
        emulatorpin="2-3",
        emulatorpin_config="2-3",
        numatune_mode="strict",
        numatune_nodeset="0",
        memory_cells="0",
    )
    now = timezone.now() - timedelta(seconds=30)
    VmCellMemory.objects.create(
        vm=vm, cell_id=0, sampled_at=now, heap_mib=100, private_mib=1500, files_mib=12
    )
    VmCellMemory.objects.create(vm=vm, cell_id=1, sampled_at=now, private_mib=400)
    VmLocalitySample.objects.create(
        vm=vm,
        host=host,
        taken_at=now,
        locality=0.8,
        own_mib={"0": 1588.0, "1": 400.0},
        home_cells="0",
        latest=True,
    )
    return vm


def test_detail_tuning_memory_and_locality(viewer_api, sampled_vm):
    response = viewer_api.get(detail("hv01", sampled_vm.uuid))
    assert_conforms(response, "/api/v1/vms/{host}/{uuid}/")
    body = response.json()
    assert body["vcpucount"] == {
        "maximum": {"config": 4, "live": 4},
        "current": {"config": 2, "live": 2},
    }
    # vCPUs 2 and 3 are offline (current 2 of 4)
    assert [(r["vcpu"], r["online"]) for r in body["vcpuinfo"]] == [
        (0, True),
        (1, True),
        (2, False),
        (3, False),
    ]
    assert body["pins"] == {"live": {"0": "0", "1": "1"}, "config": {"0": "0", "1": "1"}}
    assert body["emulatorpin"] == {"live": "2-3", "config": "2-3"}
    assert body["numatune"] == {"mode": "strict", "nodeset": "0"}

    bar = memory_bar(sampled_vm)
    memory = body["memory"]
    assert memory["home_cells"] == [0]
    assert memory["total_mib"] == bar.total_mib == 1988.0  # own memory: files not counted
    assert memory["remote_mib"] == 400.0
    assert memory["remote_pct"] == pytest.approx(bar.remote_pct)
    assert [(c["cell"], c["mib"], c["remote"]) for c in memory["cells"]] == [
        (0, 1588.0, False),
        (1, 400.0, True),
    ]
    assert memory["cells"][0]["files_mib"] == 12 and memory["cells"][0]["heap_mib"] == 100

    locality = body["locality"]
    assert locality["locality"] == 0.8 and locality["home_cells"] == "0"
    assert [(c["cell"], c["home"]) for c in locality["cells"]] == [(0, True), (1, False)]
    assert locality["cells"][1]["distance"] == 21  # the fixture's SLIT: other socket
    assert locality["cells"][1]["weight"] == 0
    assert body["locality_threshold"] == 0.9
    assert body["locality_below"] is True


# --- filters: the VM list page's --------------------------------------------------------------


@pytest.fixture
def fleet():
    hv1, hv2 = make_host("hv01"), make_host("hv02", "x86_64-4node-basic.xml")
    make_vm(hv1, "db01", pins={0: "0", 1: "1"})
    make_vm(hv1, "db02", pins={0: "0"})
    make_vm(hv1, "web01", running=False)
    make_vm(hv2, "web02", drift=True, changed_outside=True)
    make_vm(hv2, "cache01", pins={0: "0", 1: "12"}, state="paused")
    make_vm(hv2, "old01", gone_at=timezone.now())
    return hv1, hv2


QUERIES = [
    {},
    {"host": "hv01"},
    {"host": "hv02", "state": "paused"},
    {"state": "shut off"},
    {"pinning": "pinned"},
    {"pinning": "partly"},
    {"pinning": "unpinned"},
    {"cross_node": "true"},
    {"cross_node": "false"},
    {"drift": "true"},
    {"changed_outside": "true"},
    {"changed_outside": "false", "host": "hv02"},
    {"include_gone": "on"},
    {"include_gone": "true", "host": "hv02"},
    {"include_gone": "false"},
    {"name": "db"},
    {"name": "WEB"},
    {"name": "nothing-like-it"},
    {"cross_node": "", "drift": "", "host": ""},
]


def page_names(client: Client, query: dict) -> list[str]:
    response = client.get(reverse("vms:list"), query)
    assert response.status_code == 200
    return [vm.name for vm in response.context["vms"]]


@pytest.mark.parametrize("query", QUERIES, ids=[urlencode(q) or "none" for q in QUERIES])
def test_filters_give_the_pages_vms(viewer_api, users, fleet, query):
    page = Client()
    page.force_login(users["viewer"])
    response = viewer_api.get(LIST, query)
    assert response.status_code == 200, response.content
    assert_conforms(response, "/api/v1/vms/")
    names = [vm["name"] for vm in response.json()["results"]]
    assert names == page_names(page, query)
    assert response.json()["count"] == len(names)


def test_filters_do_filter(viewer_api, fleet):
    def names(**query):
        return sorted(vm["name"] for vm in viewer_api.get(LIST, query).json()["results"])

    assert names() == ["cache01", "db01", "db02", "web01", "web02"]
    assert names(host="hv01") == ["db01", "db02", "web01"]
    assert names(pinning="pinned") == ["cache01", "db01"]
    # an unpinned vCPU may run on every cell: cross-node too
    assert names(cross_node="true") == ["cache01", "db02", "web01", "web02"]
    assert names(cross_node="false") == ["db01"]
    assert names(drift="true") == ["web02"]
    assert names(include_gone="on", host="hv02") == ["cache01", "old01", "web02"]


BAD = [
    ({"host": "nowhere"}, "host"),
    ({"state": "sleeping"}, "state"),
    ({"pinning": "glued"}, "pinning"),
    ({"cross_node": "maybe"}, "cross_node"),
    ({"drift": "1"}, "drift"),
    ({"changed_outside": "yes"}, "changed_outside"),
    ({"name": "x" * 256}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"host": "hv01\x00"}, "host"),
    ({"state": "\u0663"}, "state"),
]


@pytest.mark.parametrize("query, field", BAD, ids=[field for _, field in BAD])
def test_bad_filter_values_are_400_in_the_filters_words(viewer_api, users, fleet, query, field):
    response = viewer_api.get(LIST, query)
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body) == [field]
    page = Client()
    page.force_login(users["viewer"])
    form = page.get(reverse("vms:list"), query).context["filter"].form
    assert body == {name: list(errors) for name, errors in form.errors.items()}


@pytest.mark.parametrize("value", ["0", "-1", "abc", "99999999999999999999999", "\u0663"])
def test_bad_pages_are_404_not_500(viewer_api, fleet, value):
    response = viewer_api.get(LIST, {"page": value})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_pagination(viewer_api, settings):
    host = make_host("hv01")
    for k in range(55):
        make_vm(host, f"vm{k:02d}", vcpus=1)
    first = viewer_api.get(LIST).json()
    assert first["count"] == 55 and len(first["results"]) == 50
    assert first["next"].endswith("?page=2") and first["previous"] is None
    second = viewer_api.get(LIST, {"page": 2}).json()
    assert [vm["name"] for vm in second["results"]] == [f"vm{k}" for k in range(50, 55)]
    kept = viewer_api.get(LIST, {"page": 2, "host": "hv01"}).json()
    assert "host=hv01" in kept["previous"]


# --- query counts ------------------------------------------------------------------------------


def test_list_queries_do_not_grow_with_the_vms(viewer_api):
    hosts = [make_host("hv01"), make_host("hv02", "x86_64-4node-basic.xml")]
    made = []

    def grow(n: int) -> None:
        for _ in range(n):
            k = len(made)
            made.append(make_vm(hosts[k % 2], f"vm{k:02d}", pins={0: "0"}))

    assert_constant_queries(viewer_api, LIST, grow, sizes=(1, 6))
    assert_constant_queries(viewer_api, LIST + "?pinning=partly&host=hv01", grow, sizes=(6, 12))


def test_detail_queries_do_not_grow_with_the_vcpus(viewer_api):
    host = make_host("hv01")
    vms = []

    def grow(n: int) -> None:
        vms.append(make_vm(host, f"vm{len(vms)}", vcpus=len(vms) * 4 + n, pins={0: "1"}))

    assert_constant_queries(
        viewer_api, lambda: detail("hv01", vms[-1].uuid), grow, sizes=(1, 8), label="VM detail"
    )
