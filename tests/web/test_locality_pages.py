"""Locality on the pages: the VM page (now, flagged under the threshold, per-cell weights, the
history chart's data per window), the host page's and the dashboard's least-local VMs, the
policy's threshold deciding the flag, escaping, who sees VM names, and the plan a locality
trigger made.

Samples are stored through the real path (vms.sampling.store_sample). The host fixture is
x86_64-2node-24cpu-ht: cell 0 = CPUs 0-5,12-17, cell 1 = CPUs 6-11,18-23, distance 21 (two
sockets: memory on the other one counts nothing).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from balancing import scheduler as plan_scheduler
from balancing.models import BalancingPlan, BalancingPolicy
from tests.web.test_locality_history import snc, store

pytestmark = [pytest.mark.web, pytest.mark.django_db]

ON_CELL_0 = {0: "0", 1: "1"}
HOSTILE = "<script>alert('x')</script>&\"vm\""


@pytest.fixture
def host(host_factory):
    return host_factory("hv1", worker_queue="host.hv1")


def minutes_ago(n: int):
    return timezone.now().replace(microsecond=0) - timedelta(minutes=n)


def section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


def chart_data(page: str) -> dict:
    found = re.search(r'<script id="locality-data" type="application/json">(.*?)</script>', page)
    assert found, "no chart data on the page"
    return json.loads(found.group(1))


# --- the VM page --------------------------------------------------------------------------------


def test_vm_page_shows_its_locality_flagged_below_the_threshold(viewer_client, host, vm_factory):
    vm = vm_factory(host, "db01", pins=ON_CELL_0)
    store(host, minutes_ago(3), {vm: {0: 512.0}})
    store(host, minutes_ago(2), {vm: {0: 256.0, 1: 256.0}})  # half of it moved away
    page = viewer_client.get(vm.get_absolute_url(), {"window": "1h"}).content.decode()
    now = section(page, "locality")
    assert 'data-locality="0.50"' in now  # half home, half on the other socket (x 0)
    assert 'id="locality-below"' in now and "below 0.90" in now
    assert "home cells 0" in now
    assert re.search(r'data-cell="0" data-weight="1.00"', now)
    assert re.search(r'data-cell="1" data-weight="0.00"', now)
    data = chart_data(page)
    assert data["threshold"] == 0.9 and data["cells"] == [0, 1] and data["home_cells"] == [0]
    values = [v for v in data["locality"] if v is not None]
    assert values == [1.0, pytest.approx(0.5, abs=1e-4)]  # one point a minute
    assert [v for v in data["own_mib"]["1"] if v is not None] == [0.0, 256.0]
    assert data["bucket_s"] == 60


def test_the_policys_threshold_decides_the_flag(viewer_client, host, vm_factory):
    BalancingPolicy.objects.create(host=host, locality_threshold=0.4)
    vm = vm_factory(host, "db01", pins=ON_CELL_0)
    store(host, minutes_ago(2), {vm: {0: 50.0, 1: 50.0}})  # 0.50: under the default 0.9
    now = section(viewer_client.get(vm.get_absolute_url()).content.decode(), "locality")
    assert 'data-locality="0.50"' in now
    assert 'id="locality-ok"' in now and "at or above 0.40" in now
    assert 'id="locality-below"' not in now


@pytest.mark.parametrize(
    ("distances", "value", "weight", "says"),
    [
        ("snc", "0.90", "0.80", "near: distance 12 from the nearest home cell"),
        ("sockets", "0.50", "0.00", "remote: distance 21 from the nearest home cell, twice"),
        ("unknown", "0.50", "0.00", "remote, distance unknown: counts as nothing"),
    ],
)
def test_each_cell_says_why_it_counts_what_it_counts(
    viewer_client, host, vm_factory, distances, value, weight, says
):
    if distances == "snc":
        snc(host)  # two sub-NUMA clusters of one socket: 12
    elif distances == "unknown":
        host.cells.update(distances={})
    vm = vm_factory(host, "db01", pins=ON_CELL_0)
    store(host, minutes_ago(2), {vm: {0: 256.0, 1: 256.0}})
    now = section(viewer_client.get(vm.get_absolute_url()).content.decode(), "locality")
    assert f'data-locality="{value}"' in now
    row = re.search(r'<tr data-cell="1" data-weight="([0-9.]+)">(.*?)</tr>', now, re.S)
    assert row and row.group(1) == weight
    assert says in row.group(2)
    assert "home: its vCPUs may run there" in now  # cell 0


@pytest.mark.parametrize(
    ("query", "window", "bucket_s"),
    [
        ("1h", "1h", 60),
        ("24h", "24h", 300),
        ("7d", "7d", 900),
        ("30d", "30d", 3600),
        ("x", "24h", 300),
    ],
)
def test_vm_page_chart_windows(viewer_client, host, vm_factory, query, window, bucket_s):
    vm = vm_factory(host, "db01", pins=ON_CELL_0)
    store(host, minutes_ago(2), {vm: {0: 10.0}})
    response = viewer_client.get(vm.get_absolute_url(), {"window": query})
    page = response.content.decode()
    nav = page[page.index('id="locality-window"') :]
    assert re.search(rf'data-window="{window}" class="current"', nav)
    data = chart_data(page)
    assert data["bucket_s"] == bucket_s
    assert [v for v in data["locality"] if v is not None] == [1.0]  # raw tail on 7d/30d too


def test_a_vm_without_samples_says_why(viewer_client, host_factory, host, vm_factory):
    stopped = vm_factory(host, "stopped", pins=ON_CELL_0)
    page = viewer_client.get(stopped.get_absolute_url()).content.decode()
    assert 'id="locality-none"' in page and "not running at the host's last sample" in page
    assert 'id="locality-no-history"' in page
    plain = vm_factory(host_factory("plain"), "v")
    page = viewer_client.get(plain.get_absolute_url()).content.decode()
    assert "Locality needs an on-host worker" in page


def test_unknown_home_cells_show_as_unknown(viewer_client, host, vm_factory):
    vm = vm_factory(host, "nocells", cells="")
    store(host, minutes_ago(2), {vm: {0: 10.0}})
    page = viewer_client.get(vm.get_absolute_url()).content.decode()
    assert 'id="locality-unknown"' in section(page, "locality")


# --- host page and dashboard --------------------------------------------------------------------


def fleet(host, vm_factory, count: int, prefix: str = "vm") -> dict[str, float]:
    """*count* VMs on cell 0 with 0 .. count-1 tenths of their memory on cell 1; one sample.
    Returns name -> expected locality."""
    memory, expected = {}, {}
    for i in range(count):
        vm = vm_factory(host, f"{prefix}{i:02d}", pins=ON_CELL_0)
        away = min(i, 10) / 10
        memory[vm] = {0: 100.0 * (1 - away), 1: 100.0 * away}
        expected[vm.name] = 1 - away  # the other socket's memory counts nothing
    store(host, minutes_ago(1), memory)
    return expected


def least_local_rows(page: str) -> list[tuple[str, str]]:
    rows = re.findall(
        r'<tr data-least-local="([^"]*)"[^>]*>.*?data-locality="([0-9.]+)"', page, re.S
    )
    return rows


def test_host_page_lists_its_ten_least_local_vms_flagged(viewer_client, host, vm_factory):
    expected = fleet(host, vm_factory, 12)
    page = viewer_client.get(reverse("hosts:detail", args=[host.name])).content.decode()
    listed = section(page, "least-local")
    rows = least_local_rows(listed)
    lowest = sorted(expected, key=lambda name: (expected[name], name))[:10]
    assert [name for name, _ in rows] == lowest
    assert [value for _, value in rows][:2] == ["0.00", "0.00"]  # vm10, vm11: all away
    # 0.9 flags all but the VMs with at most a tenth of their memory on the next socket
    below = {name for name, value in expected.items() if value < 0.9}
    assert listed.count("locality-below-row") == len(below & set(lowest))
    assert f'data-locality-below-count="{len(below)}"' in listed
    assert "threshold 0.90" in listed


def test_dashboard_lists_the_fleets_least_local_vms(
    viewer_client, host_factory, vm_factory, quick_status
):
    first = host_factory("hv1", worker_queue="host.hv1")
    second = host_factory("hv2", worker_queue="host.hv2")
    BalancingPolicy.objects.create(host=second, locality_threshold=0.25)
    fleet(first, vm_factory, 3, "a")  # 1.0, 0.9, 0.8
    fleet(second, vm_factory, 8, "b")  # 1.0 .. 0.3: none below hv2's 0.25
    page = viewer_client.get(reverse("home")).content.decode()
    listed = section(page, "least-local")
    rows = least_local_rows(listed)
    assert [name for name, _ in rows] == [
        "b07",
        "b06",
        "b05",
        "b04",
        "b03",
        "a02",
        "b02",
        "a01",
        "b01",
        "a00",
    ]  # lowest first; a tie goes by host name
    assert 'href="/hosts/hv1/"' in listed and 'href="/hosts/hv2/"' in listed
    # each VM against its own host's threshold: only a02 (0.8 < hv1's 0.9)
    assert re.findall(r'data-least-local="([^"]*)" class="locality-below-row"', listed) == ["a02"]
    assert 'data-locality-below-count="1"' in listed


def test_dashboard_flags_by_each_hosts_threshold(
    viewer_client, host_factory, vm_factory, quick_status
):
    strict = host_factory("hv1", worker_queue="host.hv1")
    BalancingPolicy.objects.create(host=strict, locality_threshold=0.99)
    fleet(strict, vm_factory, 2, "s")  # 1.0 and 0.9
    page = viewer_client.get(reverse("home")).content.decode()
    listed = section(page, "least-local")
    assert re.search(r'<tr data-least-local="s01" class="locality-below-row"', listed)
    assert 'data-locality-below-count="1"' in listed


def test_a_user_without_a_role_sees_neither_the_status_nor_vm_names(
    client, django_user_model, host, vm_factory, quick_status
):
    fleet(host, vm_factory, 2, "secret")
    client.force_login(django_user_model.objects.create_user("nobody", password="pw-123456"))
    response = client.get(reverse("home"))
    assert response.status_code == 403
    page = response.content.decode()
    assert 'id="status"' not in page
    assert "secret0" not in page and 'id="least-local"' not in page


def test_the_status_without_the_vms_permission_names_no_vm(
    client, django_user_model, host, vm_factory, quick_status
):
    fleet(host, vm_factory, 2, "secret")
    user = django_user_model.objects.create_user("hosts-only", password="pw-123456")
    user.user_permissions.add(Permission.objects.get(codename="view_host"))
    client.force_login(user)
    assert 'id="status"' in client.get(reverse("status")).content.decode()
    page = client.get(reverse("home")).content.decode()
    assert 'id="dash-hosts"' in page  # the hosts' figures, which need only view_host
    assert "secret0" not in page and 'id="least-local"' not in page


def test_hostile_vm_names_are_escaped_in_the_least_local_lists(
    viewer_client, host, vm_factory, quick_status
):
    vm = vm_factory(host, HOSTILE, pins=ON_CELL_0)
    store(host, minutes_ago(1), {vm: {1: 10.0}})
    for url in (reverse("hosts:detail", args=[host.name]), reverse("home"), vm.get_absolute_url()):
        page = viewer_client.get(url).content.decode()
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(" in page


def test_no_samples_no_list(viewer_client, host, vm_factory):
    vm_factory(host, "idle", pins=ON_CELL_0)
    page = viewer_client.get(reverse("hosts:detail", args=[host.name])).content.decode()
    assert 'id="no-locality"' in section(page, "least-local")


# --- the policy page and the plan a locality trigger made -------------------------------------


def test_the_policy_page_shows_the_default_threshold(ops_client, host):
    url = reverse("balancing:policy", args=[host.name])
    page = ops_client.get(url).content.decode()
    assert re.search(r'name="locality_threshold" value="0.9"', page)


def test_a_locality_plan_says_why_it_was_made(ops_client, host, vm_factory):
    BalancingPolicy.objects.create(host=host, mode="recommend", min_improvement_pct=0)
    vm = vm_factory(host, "away01", pins=ON_CELL_0)
    store(host, minutes_ago(1), {vm: {1: 100.0}})
    plan = plan_scheduler.balance_host(host)
    assert plan.trigger == BalancingPlan.Trigger.LOCALITY
    page = ops_client.get(plan.get_absolute_url()).content.decode()
    assert 'id="plan-trigger-locality"' in page
    assert "planned because locality is below the policy&#x27;s 0.90: away01 0.00" in page
    listed = ops_client.get(reverse("balancing:list"), {"trigger": "locality"})
    assert list(listed.context["plans"]) == [plan]
    assert "the scheduler: locality below threshold" in listed.content.decode()
