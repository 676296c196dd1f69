"""Pages and sweeps at fleet size (issue 16, item 3): the hosts list pages and filters its
hosts, the VM list sorts by each of its columns, and none of them, nor the drift check nor the
scheduler's balancing sweep, runs more queries for more hosts or VMs. ``bench/fleet_pages.py``
gives their times at 500 hosts x 40 VMs; these tests hold the counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from balancing import scheduler as plan_scheduler
from balancing.inputs import demands_for_host, demands_for_hosts
from balancing.models import BalancingPlan, BalancingPolicy
from changes import drift
from changes.models import Change
from hosts.models import Host
from tests.querycount import assert_constant_queries
from tests.web.conftest import make_host, make_vm
from tests.web.test_balancing_plans import seed_inventory
from vms.models import VcpuPin, VirtualMachine, VmCellMemory, VmLocalitySample
from web import metrics
from web.hosts import views as host_views

pytestmark = [pytest.mark.web, pytest.mark.django_db]

MIB = 1024 * 1024


@pytest.fixture
def small_host_pages(monkeypatch):
    """Three hosts a page of the hosts list, so that a few hosts fill several pages."""
    monkeypatch.setattr(host_views, "HOST_PAGE_SIZE", 3)


def listed_hosts(response) -> list[str]:
    return [host.name for host in response.context["hosts"]]


# --- /hosts/ ------------------------------------------------------------------------------------


def test_host_list_pages_its_hosts_by_name(ops_client, small_host_pages):
    for i in range(7):
        make_host(f"hv{i:02d}")
    url = reverse("hosts:list")
    first = ops_client.get(url)
    assert listed_hosts(first) == ["hv00", "hv01", "hv02"]
    page = first.content.decode()
    assert "7 hosts." in page
    assert "page 1 of 3" in page
    assert listed_hosts(ops_client.get(url, {"page": "3"})) == ["hv06"]
    # a page number past the end is the last page, garbage the first
    assert listed_hosts(ops_client.get(url, {"page": "99"})) == ["hv06"]
    assert listed_hosts(ops_client.get(url, {"page": "x"})) == ["hv00", "hv01", "hv02"]


def test_host_list_filters_by_name_and_sync_state_and_the_pager_keeps_them(
    ops_client, small_host_pages
):
    for i in range(5):
        make_host(f"db{i:02d}")
    make_host("web01")
    Host.objects.filter(name__in=["db01", "db03"]).update(
        sync_status=Host.SyncStatus.ERROR, last_error="Cannot recv data"
    )
    url = reverse("hosts:list")
    response = ops_client.get(url, {"name": "db"})
    assert listed_hosts(response) == ["db00", "db01", "db02"]
    assert "?name=db&amp;page=2" in response.content.decode()
    assert listed_hosts(ops_client.get(url, {"name": "db", "page": "2"})) == ["db03", "db04"]
    assert listed_hosts(ops_client.get(url, {"status": "error"})) == ["db01", "db03"]
    nothing = ops_client.get(url, {"name": "nope"})
    assert listed_hosts(nothing) == []
    assert "No host matches the filter." in nothing.content.decode()
    bad = ops_client.get(url, {"status": "exploded"})
    assert listed_hosts(bad) == []
    assert "Nothing is listed until the filter is corrected." in bad.content.decode()


def test_host_list_drift_summary_counts_the_whole_fleet(ops_client, small_host_pages):
    hosts = [make_host(f"hv{i:02d}") for i in range(5)]
    for host in hosts:
        make_vm(host, f"{host.name}-drifted", drift=True)
        make_vm(host, f"{host.name}-outside", changed_outside=True)
        make_vm(host, f"{host.name}-fine")
    make_vm(hosts[0], "gone-drifted", drift=True, gone_at=timezone.now())
    page = ops_client.get(reverse("hosts:list"), {"name": "hv04"}).content.decode()
    # the summary is the fleet's, whatever page or filter the table shows
    assert f'href="{reverse("vms:list")}?drift=true">5 drifted VMs</a>' in page
    assert "5 VMs changed outside the portal" in page
    assert 'data-drift-count="1"' in page


def test_host_list_queries_do_not_grow_with_hosts_or_pages(ops_client, small_host_pages):
    serial = iter(range(1000))

    def grow(count: int) -> None:
        for _ in range(count):
            host = make_host(f"hv{next(serial):03d}", "x86_64-4node-basic.xml")
            make_vm(host, "a", drift=True)
            make_vm(host, "b", pins={0: "0", 1: "4"})

    # one page, then three pages of hosts (the first page shown each time)
    counts = assert_constant_queries(ops_client, reverse("hosts:list"), grow, sizes=(2, 6, 9))
    assert counts[0] <= 10


# --- /vms/ sorted ------------------------------------------------------------------------------


@pytest.fixture
def sortable_vms():
    """Five VMs on two hosts, each column's values different."""
    hv1 = make_host("hv01")
    hv2 = make_host("hv02", "x86_64-4node-basic.xml")
    make_vm(hv1, "delta", vcpus=4, memory_kib=1 << 20, pins={0: "0", 1: "1", 2: "2", 3: "3"})
    make_vm(hv2, "alpha", vcpus=1, memory_kib=8 << 20, running=False)
    make_vm(hv1, "echo", vcpus=2, memory_kib=2 << 20, pins={0: "0"})
    make_vm(hv2, "bravo", vcpus=3, memory_kib=4 << 20)
    make_vm(hv1, "charlie", vcpus=2, memory_kib=16 << 20, pins={0: "1", 1: "2"})


SORTED = {
    "name": ["alpha", "bravo", "charlie", "delta", "echo"],
    "host": ["charlie", "delta", "echo", "alpha", "bravo"],  # hv01's by name, then hv02's
    "state": ["charlie", "delta", "echo", "bravo", "alpha"],  # running < shut off
    "vcpus": ["alpha", "charlie", "echo", "bravo", "delta"],  # 2 and 2: by host, name
    "memory": ["delta", "echo", "bravo", "alpha", "charlie"],
    "pinning": ["echo", "charlie", "delta", "alpha", "bravo"],  # partly < pinned < unpinned
}
#: Descending by the column; rows of equal values keep the list's own order (host, name).
SORTED_DESC = {
    "name": ["echo", "delta", "charlie", "bravo", "alpha"],
    "host": ["alpha", "bravo", "charlie", "delta", "echo"],
    "state": ["alpha", "charlie", "delta", "echo", "bravo"],
    "vcpus": ["delta", "bravo", "charlie", "echo", "alpha"],
    "memory": ["charlie", "alpha", "bravo", "echo", "delta"],
    "pinning": ["alpha", "bravo", "charlie", "delta", "echo"],
}


@pytest.mark.parametrize("column", sorted(SORTED))
def test_vm_list_sorts_by_each_column_both_ways(ops_client, sortable_vms, column):
    url = reverse("vms:list")
    names = [vm.name for vm in ops_client.get(url, {"sort": column}).context["vms"]]
    assert names == SORTED[column]
    descending = ops_client.get(url, {"sort": f"-{column}"}).context["vms"]
    assert [vm.name for vm in descending] == SORTED_DESC[column]


def test_vm_list_headings_sort_and_keep_the_filters(ops_client, sortable_vms):
    url = reverse("vms:list")
    page = ops_client.get(url, {"host": "hv01", "page": "1"}).content.decode()
    assert 'href="?host=hv01&amp;sort=name" class="sort">Name</a>' in page
    page = ops_client.get(url, {"host": "hv01", "sort": "name"}).content.decode()
    # sorted by it: the heading says so and sorts the other way
    assert 'href="?host=hv01&amp;sort=-name" class="sort sorted-asc">Name</a>' in page
    bad = ops_client.get(url, {"sort": "uuid"})
    assert list(bad.context["vms"]) == []
    assert "Nothing is listed until the filter is corrected." in bad.content.decode()


def test_the_host_page_vm_table_has_no_sort_links(ops_client, sortable_vms):
    page = ops_client.get(reverse("hosts:detail", args=["hv01"])).content.decode()
    assert 'class="sort' not in page


@pytest.mark.parametrize("sort", ["name", "-host", "state", "-vcpus", "memory", "-pinning"])
def test_sorted_vm_list_queries_do_not_grow_with_vms(ops_client, sort):
    hosts = [make_host("hv01"), make_host("hv02", "x86_64-4node-basic.xml")]
    serial = iter(range(1000))

    def grow(count: int) -> None:
        for _ in range(count):
            n = next(serial)
            make_vm(hosts[n % 2], f"vm{n:03d}", vcpus=1 + n % 3, drift=n % 2 == 0)

    url = reverse("vms:list") + f"?sort={sort}&drift=true"
    assert_constant_queries(ops_client, url, grow, sizes=(2, 6))


# --- the drift check ----------------------------------------------------------------------------


def _tuning(pin: str) -> dict:
    return {
        "vcpu_current": 2,
        "vcpu_max": 2,
        "vcpupin": {"0": pin},
        "emulatorpin": None,
        "numatune_mode": None,
        "numatune_nodeset": None,
    }


def _drift_fleet(first: int, count: int) -> list[VirtualMachine]:
    """*count* hosts of two VMs, each with a finished change whose ``after`` says vCPU 0 on
    CPU 1; on each host one VM still there, the other moved to CPU 5 by hand since."""
    done = timezone.now() - timedelta(minutes=5)
    outside = []
    for i in range(first, first + count):
        host = make_host(f"hv{i:02d}")
        for name, pin in (("kept", "1"), ("moved", "5")):
            vm = make_vm(host, name, tuning_live=_tuning(pin), tuning_config=_tuning("1"))
            Change.objects.create(
                actor_name="alice",
                host=host,
                vm=vm,
                target_name=vm.name,
                kind=Change.Kind.VCPUPIN,
                params={"vcpu": 0, "cpuset": "1"},
                reason="fleet",
                status=Change.Status.SUCCEEDED,
                finished_at=done,
                after={
                    "live_xml": "<domain>...</domain>",
                    "live_tuning": _tuning("1"),
                    "config_tuning": _tuning("1"),
                },
            )
            if name == "moved":
                outside.append(vm)
    return outside


def test_drift_check_flags_every_host_s_vm_changed_outside_in_constant_queries():
    outside = _drift_fleet(0, 2)
    with CaptureQueriesContext(connection) as two:
        assert drift.check_drift() == 2
    with CaptureQueriesContext(connection) as two_again:
        assert drift.check_drift() == 2
    outside += _drift_fleet(2, 4)
    with CaptureQueriesContext(connection) as six:
        assert drift.check_drift() == 6
    with CaptureQueriesContext(connection) as six_again:
        assert drift.check_drift() == 6
    # a first check writes what it found (one bulk update), a second finds nothing new
    assert len(two) == len(six) == 3
    assert len(two_again) == len(six_again) == 2
    flagged = VirtualMachine.objects.filter(changed_outside=True)
    assert {vm.pk for vm in flagged} == {vm.pk for vm in outside}
    for vm in flagged:
        assert "live: vcpupin of vCPU 0: 1 -> 5 since change" in vm.changed_outside_detail


# --- the balancing sweep ------------------------------------------------------------------------


@pytest.fixture
def no_apply(monkeypatch):
    monkeypatch.setattr("balancing.tasks.apply_plan.apply_async", lambda *a, **k: None)


def _balanced_hosts(host_factory, vm_factory, first: int, count: int) -> None:
    for i in range(first, first + count):
        host, _ = seed_inventory(host_factory, vm_factory, name=f"hv{i:02d}")
        BalancingPolicy.objects.create(
            host=host, mode=BalancingPolicy.Mode.RECOMMEND, min_improvement_pct=0
        )


def _sweep() -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        made = plan_scheduler.balance_hosts()
    return made, len(queries)


def test_balancing_sweep_of_an_unchanged_fleet_runs_the_same_queries_for_more_hosts(
    host_factory, vm_factory, no_apply
):
    _balanced_hosts(host_factory, vm_factory, 0, 2)
    assert _sweep()[0] == 2
    made, unchanged_two = _sweep()
    assert made == 0  # nothing changed: no plan
    _balanced_hosts(host_factory, vm_factory, 2, 4)
    assert _sweep()[0] == 4  # only the new hosts are planned
    made, unchanged_six = _sweep()
    assert made == 0
    assert unchanged_two == unchanged_six <= 8


def test_balancing_sweep_planning_costs_no_queries_per_vm_or_per_unchanged_host(
    host_factory, vm_factory, no_apply
):
    """A host with more VMs is planned in as many queries as one with fewer, and an unchanged
    host beside it costs none."""
    _balanced_hosts(host_factory, vm_factory, 0, 1)
    made, one_host = _sweep()
    assert made == 1
    _balanced_hosts(host_factory, vm_factory, 1, 1)
    bigger = Host.objects.get(name="hv01")
    for n in range(4):
        vm_factory(bigger, f"more{n}", vcpus=2)
    made, bigger_beside_unchanged = _sweep()
    assert made == 1
    assert BalancingPlan.objects.filter(host=bigger).count() == 1
    assert bigger_beside_unchanged == one_host


# --- /metrics: the per-VM series -----------------------------------------------------------------


def _vm_with_memory(host, name: str, cells: dict[int, float]) -> VirtualMachine:
    vm = make_vm(host, name)
    for cell, mib in cells.items():
        VmCellMemory.objects.create(
            vm=vm, cell_id=cell, sampled_at=timezone.now(), heap_mib=mib, private_mib=1
        )
    VmLocalitySample.objects.create(
        vm=vm, host=host, taken_at=timezone.now(), locality=0.75, home_cells="0", latest=True
    )
    return vm


def _series(body: bytes) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


KINDS = {
    ("0", "heap"): 2 * MIB,
    ("0", "private"): MIB,
    ("1", "heap"): 0.5 * MIB,
    ("1", "private"): MIB,
}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("kind", KINDS),
        ("total", {("0", "total"): 3 * MIB, ("1", "total"): 1.5 * MIB}),
        ("off", {}),
        ("nonsense", KINDS),  # an unknown mode: the default
    ],
)
def test_metrics_vm_memory_series_per_cell_and_kind_total_or_off(
    viewer_client, settings, mode, expected
):
    settings.NUMAPORTAL_METRICS_VM_MEMORY = mode
    _vm_with_memory(make_host("hv01"), "vm1", {0: 2, 1: 0.5})
    series = _series(viewer_client.get(reverse("metrics")).content)
    memory = {
        (dict(k)["cell"], dict(k)["kind"]): v
        for k, v in series.get("numaportal_vm_memory_bytes", {}).items()
        if dict(k)["kind"] in ("heap", "private", "total")
    }
    assert memory == expected
    for labels in series.get("numaportal_vm_memory_bytes", {}):
        assert dict(labels)["host"] == "hv01" and dict(labels)["vm"] == "vm1"
    # the locality is one series per VM whatever the mode
    assert series["numaportal_vm_locality_ratio"] == {(("host", "hv01"), ("vm", "vm1")): 0.75}


def test_metrics_series_grow_by_vm_and_cell_only_never_by_vcpu(viewer_client):
    """Per VM: one locality series and 4 memory series per cell it has memory on, whatever its
    vCPUs; the documented count of the README's fleet table."""
    host = make_host("hv01")
    _vm_with_memory(host, "small", {0: 1})
    many = make_vm(host, "wide", vcpus=8)
    VmCellMemory.objects.create(vm=many, cell_id=0, sampled_at=timezone.now(), heap_mib=1)
    series = _series(viewer_client.get(reverse("metrics")).content)
    per_vm: dict[str, int] = {}
    for labels in series["numaportal_vm_memory_bytes"]:
        per_vm[dict(labels)["vm"]] = per_vm.get(dict(labels)["vm"], 0) + 1
    assert per_vm == {"small": 4, "wide": 4}


def test_the_sweep_reads_each_host_s_demands_as_planning_it_does(host_factory, vm_factory):
    """The sweep's rows for every host at once are the demands a plan of each host reads (so
    the inventory digests agree and an unchanged host is not planned again)."""
    hosts = []
    for i in range(3):
        host, vms = seed_inventory(host_factory, vm_factory, name=f"hv{i:02d}")
        VirtualMachine.objects.filter(pk=vms["web01"].pk).update(balancing_locked=True)
        VcpuPin.objects.filter(vm=vms["db01"], vcpu=1).update(online=False)
        hosts.append(host)
    together = demands_for_hosts(hosts)
    for host in hosts:
        assert together[host.pk] == demands_for_host(host)
        assert [d.name for d in together[host.pk]] == ["db01", "seed01", "web01", "web02"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3145728000.0, "3145728000.0"),
        (0.25, "0.25"),
        (0, "0.0"),
        (1.5e-05, "1.5e-05"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_metrics_sample_values_are_float_texts_the_format_reads(value, text):
    assert metrics._number(value) == text
    if value == value:  # not NaN
        assert float(text.replace("Inf", "inf")) == value
