"""The ops dashboard (home): the fleet's state, each figure a link to the list it counts, in a
constant number of queries; the services' status has moved to its own page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from balancing.models import BalancingPlan
from changes.models import Change
from hosts.models import Host
from tests.querycount import assert_constant_queries
from tests.web.changes_helpers import make_change
from tests.web.test_locality_history import store

pytestmark = [pytest.mark.web, pytest.mark.django_db]

ON_CELL_0 = {0: "0", 1: "1"}


def figures(page: str, name: str) -> dict[str, tuple[int, str]]:
    """The dashboard's figures named *name*: label -> (count, link)."""
    found = re.findall(
        rf'<a href="([^"]*)" data-{name}="([^"]*)"><span class="dash-count[^"]*">(\d+)</span>',
        page,
    )
    return {label: (int(count), url.replace("&amp;", "&")) for url, label, count in found}


def test_hosts_by_state_each_linked(ops_client, host_factory, settings):
    settings.NUMAPORTAL_HOST_STALE_AFTER = 900
    old = timezone.now() - timedelta(seconds=1000)
    host_factory("fresh1")
    host_factory("fresh2", sync_status=Host.SyncStatus.RUNNING)  # syncing, last ok recent
    host_factory("old", last_sync_ok_at=old)
    host_factory("old-queued", sync_status=Host.SyncStatus.QUEUED, last_sync_ok_at=old)
    host_factory("broken", sync_status=Host.SyncStatus.ERROR, last_error="refused")
    host_factory("untested", sync_status=Host.SyncStatus.CHECK_FAILED)
    host_factory("booting", sync_status=Host.SyncStatus.STARTING, last_sync_ok_at=None)
    gone = host_factory("gone", sync_status=Host.SyncStatus.ERROR)
    gone.removed_at = timezone.now()
    gone.save()
    page = ops_client.get(reverse("home")).content.decode()
    states = figures(page, "host-state")
    assert {label: count for label, (count, _) in states.items()} == {
        "in sync": 2,
        "stale": 2,
        "sync failed": 2,
        "starting": 1,
    }
    assert "(7 registered)" in page
    assert states["stale"][1] == "/hosts/?state=stale"
    assert states["sync failed"][1] == "/hosts/?state=failed"
    # Each figure's link lists exactly the hosts it counts (removed hosts never).
    listed = {
        label: sorted(h.name for h in ops_client.get(url).context["page"].object_list)
        for label, (_count, url) in states.items()
    }
    assert listed == {
        "in sync": ["fresh1", "fresh2"],
        "stale": ["old", "old-queued"],
        "sync failed": ["broken", "untested"],
        "starting": ["booting"],
    }


def test_drifted_vms_failed_changes_and_waiting_plans(ops_client, host_factory, vm_factory):
    host = host_factory("hv01")
    vm_factory(host, "calm", pins=ON_CELL_0)
    live_only = vm_factory(host, "live-only", pins=ON_CELL_0, drift=True)
    vm_factory(host, "touched", pins=ON_CELL_0, changed_outside=True)
    vm_factory(host, "gone-drift", drift=True, gone_at=timezone.now())
    now = timezone.now()
    for status, age in (
        (Change.Status.FAILED, timedelta(hours=2)),
        (Change.Status.FAILED, timedelta(hours=30)),  # older than 24 h: not counted
        (Change.Status.SUCCEEDED, timedelta(hours=1)),
    ):
        error = "libvirt: invalid argument" if status == Change.Status.FAILED else ""
        make_change(live_only, status=status, error=error, created_at=now - age)
    BalancingPlan.objects.create(host=host, requested_by_name="ops", status="ready")
    BalancingPlan.objects.create(host=host, requested_by_name="ops", status="applied")

    page = ops_client.get(reverse("home")).content.decode()
    vms = figures(page, "vm")
    assert vms["live-only tuning (lost at shutdown)"] == (1, "/vms/?drift=true")
    assert vms["changed outside the portal"] == (1, "/vms/?changed_outside=true")
    assert re.findall(r'data-drifted-vm="([^"]*)"', page) == ["live-only", "touched"]
    (failed,) = figures(page, "changes").values()
    assert failed[0] == 1
    assert failed[1].startswith("/changes/?status=failed&created_after=")
    assert "libvirt: invalid argument" in page
    (waiting,) = figures(page, "plans").values()
    assert waiting == (1, "/balancing/?status=ready")

    # Each link opens the list it counts.
    listed = ops_client.get(vms["live-only tuning (lost at shutdown)"][1]).content.decode()
    assert "live-only" in listed and "calm" not in listed
    changes = ops_client.get(failed[1]).context["page"].object_list
    assert {c.status for c in changes} == {Change.Status.FAILED}
    plans = ops_client.get(waiting[1]).context["plans"]
    assert [p.status for p in plans] == ["ready"]


def test_most_remote_memory_first(ops_client, host_factory, vm_factory):
    host = host_factory("hv01", worker_queue="host.hv01")
    memory = {}
    for name, away in (("half", 500.0), ("little", 50.0), ("none", 0.0), ("most", 900.0)):
        vm = vm_factory(host, name, pins=ON_CELL_0)
        memory[vm] = {0: 1000.0 - away, 1: away}
    store(host, timezone.now() - timedelta(minutes=1), memory)
    page = ops_client.get(reverse("home")).content.decode()
    assert re.findall(r'data-most-remote="([^"]*)"', page) == ["most", "half", "little"]
    assert 'data-remote-mib="900.0"' in page


def test_numa_balancing_per_host(ops_client, host_factory):
    host_factory("on1", numa_balancing=1)
    host_factory("on2", numa_balancing=1)
    host_factory("off", numa_balancing=0)
    host_factory("unread")
    found = figures(ops_client.get(reverse("home")).content.decode(), "numa-balancing")
    assert found == {
        "0 (off)": (1, "/hosts/?numa_balancing=0"),
        "1 (on)": (2, "/hosts/?numa_balancing=1"),
        "not read (no on-host worker)": (1, "/hosts/?numa_balancing=unknown"),
    }
    for label, (count, url) in found.items():
        rows = ops_client.get(url).context["page"].object_list
        assert len(rows) == count, label


def test_figures_follow_the_users_permissions(client, django_user_model, host_factory, vm_factory):
    host = host_factory("hv01")
    vm_factory(host, "secret-vm", drift=True)
    user = django_user_model.objects.create_user("hosts-only", password="pw-123456")
    user.user_permissions.add(Permission.objects.get(codename="view_host"))
    client.force_login(user)
    page = client.get(reverse("home")).content.decode()
    assert 'id="dash-hosts"' in page
    assert "secret-vm" not in page
    assert 'id="dash-vms"' not in page and 'id="dash-changes"' not in page


def test_the_status_page_has_the_services(ops_client, quick_status):
    response = ops_client.get(reverse("status"))
    assert "What is running" in response.content.decode()
    assert {c.name for c in response.context["components"]} >= {"Database", "Broker (Redis)"}
    home = ops_client.get(reverse("home")).content.decode()
    assert 'href="/status/"' in home and 'id="status"' not in home


def test_dashboard_queries_do_not_grow_with_the_fleet(ops_client, host_factory, vm_factory):
    serial = iter(range(1000))

    def grow(count: int) -> None:
        for _ in range(count):
            n = next(serial)
            host = host_factory(f"hv{n:03d}", numa_balancing=n % 2)
            vms = {
                vm_factory(host, f"vm{n}-{i}", pins=ON_CELL_0, drift=i == 0): {0: 600.0, 1: 400.0}
                for i in range(2)
            }
            store(host, timezone.now() - timedelta(minutes=1), vms)
            make_change(next(iter(vms)), status=Change.Status.FAILED, error="refused")
            BalancingPlan.objects.create(host=host, requested_by_name="ops", status="ready")

    assert_constant_queries(ops_client, reverse("home"), grow)
