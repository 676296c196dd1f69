"""Every list and detail page runs as many queries with 5 rows as with 1 (no N+1).

Each test grows what its page shows (more VMs on the host, more changes, more plans, more
numastat samples, more hosts) through :func:`tests.querycount.assert_constant_queries`, as a
superuser (the role that sees every button and link). URLs are reversed by name only.
Every page is constant today, so nothing here is marked xfail; a page found to grow would be
fixed, not marked.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from balancing import compute as plan_compute
from balancing import requests as plan_requests
from balancing import tasks as balancing_tasks
from balancing.models import BalancingPlan, BalancingPolicy
from changes.models import Change
from hosts.models import CellRollup, CellSample, Host, SampleSource
from hosts.sampling import store_cell_samples
from tests.querycount import assert_constant_queries
from tests.web.conftest import make_host, make_vm
from vms.models import VcpuPin, VirtualMachine, VmCellMemory, VmLocalityRollup, VmLocalitySample

pytestmark = [pytest.mark.web, pytest.mark.django_db]

GIB = 1024 * 1024
#: The change forms of the VM page (vms:change's ``kind``); checked against the page below.
CHANGE_FORM_KINDS = (
    "vcpupin",
    "emulatorpin",
    "numatune",
    "memory",
    "hot-add",
    "maximum",
    "hot-remove",
)

_serial = itertools.count(1)


def add_vm(host: Host, *, pinned: bool = True, **fields) -> VirtualMachine:
    """A running 2-vCPU VM (pinned to two CPUs of cell 0 unless *pinned* is False) with its
    numa_maps memory on both cells and its locality now, as the on-host worker stores them."""
    n = next(_serial)
    pins = {0: str(n % 6), 1: str(n % 6 + 12)} if pinned else None
    if pinned:
        # the badges and details the pages draw per VM (unpinned VMs stay movable for plans)
        flags = {
            "drift": n % 2 == 0,
            "drift_detail": "vcpupin differs" if n % 2 == 0 else "",
            "changed_outside": n % 3 == 0,
            "changed_outside_detail": "numatune changed" if n % 3 == 0 else "",
            "balancing_locked": n % 2 == 1,
        }
        fields = {**flags, **fields}
    vm = make_vm(host, f"g{n:04d}", pins=pins, memory_kib=GIB, **fields)
    for cell in (0, 1):
        VmCellMemory.objects.create(
            vm=vm, cell_id=cell, sampled_at=timezone.now(), heap_mib=100, private_mib=400
        )
    # below the default threshold every other VM: the least-local lists flag some
    add_locality(vm, timezone.now(), 0.5 + (n % 2) * 0.45, latest=True)
    return vm


def add_locality(vm: VirtualMachine, at, value: float, *, latest: bool = False) -> None:
    VmLocalitySample.objects.create(
        vm=vm,
        host=vm.host,
        taken_at=at,
        locality=value,
        own_mib={"0": 500.0, "1": 500.0},
        home_cells=vm.cells,
        latest=latest,
    )


def add_change(vm: VirtualMachine | None, host: Host | None = None, **fields) -> Change:
    """A finished change of *vm*, or a host setting (numa_balancing) when *vm* is None."""
    host = host or vm.host
    values = {
        "actor_name": "alice",
        "host": host,
        "vm": vm,
        "target_name": vm.name if vm else host.name,
        "kind": Change.Kind.VCPUPIN if vm else Change.Kind.NUMA_BALANCING,
        "params": {"vcpu": 0, "cpuset": "2"} if vm else {"value": 0},
        "scope": Change.Scope.BOTH if vm else Change.Scope.LIVE,
        "reason": "query count",
        "status": Change.Status.SUCCEEDED,
        **fields,
    }
    return Change.objects.create(**values)


def add_host() -> Host:
    """One more synced host with two VMs, a change of each and a numastat sample."""
    n = next(_serial)
    host = make_host(f"hv{n:04d}", numa_balancing=1)
    for pinned in (True, False):
        add_change(add_vm(host, pinned=pinned))
    add_samples(host, 1)
    return host


def add_samples(host: Host, count: int) -> None:
    """*count* more one-minute numastat samples of both cells, from 50 minutes ago on."""
    base = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=50)
    done = CellSample.objects.filter(host=host).values("taken_at").distinct().count()
    for k in range(done, done + count):
        store_cell_samples(
            host,
            base + timedelta(minutes=k),
            SampleSource.PROBE,
            free_kib={0: 1000 * 1024, 1: 2000 * 1024},
            counters={
                cell: {
                    "numa_hit": 1000 + 600 * k,
                    "numa_miss": 10 + 6 * k,
                    "numa_foreign": 5 * k,
                    "interleave_hit": k,
                    "local_node": 900 + 540 * k,
                    "other_node": 10 + 60 * k,
                }
                for cell in (0, 1)
            },
            boot_time=1_700_000_000,
        )


def times(make, *args, **kwargs):
    """A ``grow`` that calls ``make(*args, **kwargs)`` once per added row."""

    def grow(count: int) -> None:
        for _ in range(count):
            make(*args, **kwargs)

    return grow


@pytest.fixture
def host() -> Host:
    """hv01: VMs split over both cells and unpinned, cell samples, a policy, a change."""
    host = make_host("hv01", numa_balancing=1)
    db01 = make_vm(host, "db01", vcpus=4, pins={0: "0", 1: "1", 2: "6", 3: "7"}, memory_kib=GIB)
    make_vm(host, "web01", vcpus=2, memory_kib=GIB)
    add_change(db01)
    add_samples(host, 3)
    BalancingPolicy.objects.create(host=host)
    return host


@pytest.fixture
def vm(host) -> VirtualMachine:
    return host.vms.get(name="db01")


@pytest.fixture
def root(admin_client) -> Client:
    """The superuser of pytest-django's admin_client: every button and link is rendered."""
    return admin_client


def computed_plan(host: Host) -> BalancingPlan:
    """A plan requested and computed here (the worker's hand-over skipped)."""
    with mock.patch.object(balancing_tasks.compute_plan, "apply_async"):
        plan = plan_requests.request_plan(host=host, actor=None)
    return plan_compute.compute_plan(plan.pk)


def approved_plan(host: Host, actor) -> BalancingPlan:
    """A computed plan of *host*, approved: its change records exist (no worker runs)."""
    plan = computed_plan(host)
    assert plan.status == BalancingPlan.Status.READY, (plan.status, plan.error)
    with mock.patch.object(balancing_tasks.apply_plan, "apply_async"):
        plan_requests.approve_plan(plan=plan, actor=actor, reason="query count")
    plan.refresh_from_db()
    return plan


# --- the helper itself -----------------------------------------------------------------------


class OneQueryPerHost:
    """A stand-in client whose "page" reads every host's cells one host at a time."""

    def get(self, url: str):
        for host in Host.objects.order_by("pk"):
            list(host.cells.all())
        return SimpleNamespace(status_code=200, streaming=False)


def test_the_helper_catches_an_n_plus_1():
    with pytest.raises(AssertionError) as failure:
        assert_constant_queries(OneQueryPerHost(), "/fake/", times(add_host), label="fake")
    message = str(failure.value)
    assert "GET /fake/ (fake): 2 queries with 1 row(s), 6 with 5" in message
    assert '1 -> 5: SELECT "hosts_cell".' in message
    assert 'WHERE "hosts_cell"."host_id" = ?' in message


def test_the_helper_passes_a_constant_page():
    class OneQuery:
        def get(self, url: str):
            list(Host.objects.prefetch_related("cells"))
            return SimpleNamespace(status_code=200, streaming=False)

    assert assert_constant_queries(OneQuery(), "/fake/", times(add_host)) == [2, 2]


# --- project pages ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["home", "status", "status-fragment"])
def test_home_and_status_table_with_more_hosts(root, quick_status, name):
    assert_constant_queries(root, reverse(name), times(add_host))


def test_metrics_with_more_hosts(root):
    assert_constant_queries(root, reverse("metrics"), times(add_host))


# --- hosts ------------------------------------------------------------------------------------


def test_host_list_with_more_hosts(root, host):
    assert_constant_queries(root, reverse("hosts:list"), times(add_host))


def test_host_list_with_more_vms_and_changes(root, host):
    assert_constant_queries(
        root, reverse("hosts:list"), times(lambda: add_change(add_vm(host, pinned=False)))
    )


def test_host_add_form_with_more_hosts(root, host):
    assert_constant_queries(root, reverse("hosts:add"), times(add_host))


@pytest.mark.parametrize("name", ["hosts:detail", "hosts:distances", "hosts:sync-status"])
def test_host_pages_with_more_vms(root, host, name):
    def grow_vm_with_changes() -> None:
        vm = add_vm(host)
        add_change(vm)
        add_change(None, host)  # numa_balancing, on the host page's own list

    assert_constant_queries(root, reverse(name, args=[host.name]), times(grow_vm_with_changes))


def test_host_cell_drawing_with_more_vms(root, host):
    assert_constant_queries(root, reverse("hosts:cell", args=[host.name, 0]), times(add_vm, host))


def test_host_numastat_with_more_samples(root, host):
    assert_constant_queries(
        root, reverse("hosts:numastat", args=[host.name]), lambda n: add_samples(host, n)
    )


def test_host_numastat_30_days_with_more_rollups(root, host):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=10)
    buckets = itertools.count()

    def grow(count: int) -> None:
        for _ in range(count):
            at = start + timedelta(minutes=15 * next(buckets))
            for cell in (0, 1):
                CellRollup.objects.create(
                    host=host,
                    cell_id=cell,
                    bucket_start=at,
                    bucket_s=900,
                    samples=15,
                    covered_s=900.0,
                    free_kib_avg=1000 * 1024,
                    numa_hit_delta=1000,
                    numa_miss_delta=10,
                    local_node_delta=900,
                    other_node_delta=100,
                )

    url = reverse("hosts:numastat", args=[host.name]) + "?window=30d"
    assert_constant_queries(root, url, grow)


def test_numa_balancing_form_with_more_changes(root, host):
    assert_constant_queries(
        root,
        reverse("hosts:numa-balancing", args=[host.name]),
        times(add_change, None, host),
    )


def test_remove_confirmation_with_more_vms(root, host):
    assert_constant_queries(root, reverse("hosts:remove", args=[host.name]), times(add_vm, host))


# --- vms --------------------------------------------------------------------------------------


def test_vm_list_with_more_vms_over_hosts(root, host):
    other = make_host("hv02", "x86_64-4node-basic.xml")
    hosts = itertools.cycle([host, other])

    def grow(count: int) -> None:
        for _ in range(count):
            add_change(add_vm(next(hosts), pinned=False))

    assert_constant_queries(root, reverse("vms:list"), grow)


def test_vm_detail_with_more_changes(root, vm):
    assert_constant_queries(root, vm.get_absolute_url(), times(add_change, vm))


def test_vm_detail_with_more_vms_on_its_host(root, vm):
    assert_constant_queries(root, vm.get_absolute_url(), times(add_vm, vm.host))


def test_vm_detail_with_more_locality_samples(root, vm):
    """The 24-hour chart reads raw samples; more of them, the same queries."""
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=5)
    minutes = itertools.count()

    def grow(count: int) -> None:
        for _ in range(count):
            add_locality(vm, start + timedelta(minutes=next(minutes)), 0.6)

    assert_constant_queries(root, vm.get_absolute_url(), grow)


def test_vm_detail_30_days_with_more_locality_rollups(root, vm):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=10)
    buckets = itertools.count()

    def grow(count: int) -> None:
        for _ in range(count):
            VmLocalityRollup.objects.create(
                vm=vm,
                host=vm.host,
                bucket_start=start + timedelta(minutes=15 * next(buckets)),
                bucket_s=900,
                samples=15,
                locality_sum=9.0,
                locality_n=15,
                locality_min=0.5,
                own_mib_sum={"0": 7500.0, "1": 7500.0},
            )
        add_locality(vm, timezone.now() - timedelta(minutes=count), 0.6)  # the raw tail

    assert_constant_queries(root, vm.get_absolute_url() + "?window=30d", grow)


def add_vcpu(vm: VirtualMachine) -> None:
    """One more (offline) vCPU: the maximum grows, its row joins the vCPU table."""
    count = vm.vcpus.count()
    VcpuPin.objects.create(vm=vm, vcpu=count, online=False, state="offline", affinity="0-23")
    VirtualMachine.objects.filter(pk=vm.pk).update(
        vcpu_max_config=count + 1, vcpu_max_live=count + 1
    )


def test_vm_detail_with_more_vcpus(root, vm):
    assert_constant_queries(root, vm.get_absolute_url(), times(add_vcpu, vm))


def test_change_form_kinds_are_the_vm_pages(root, vm):
    """CHANGE_FORM_KINDS lists every form the VM page offers (a new form joins the tests)."""
    slugs = [slug for slug, _title in root.get(vm.get_absolute_url()).context["change_forms"]]
    assert tuple(slugs) == CHANGE_FORM_KINDS


@pytest.mark.parametrize("kind", CHANGE_FORM_KINDS)
def test_change_form_with_more_vms_vcpus_and_changes(root, vm, kind):
    def grow(count: int) -> None:
        for _ in range(count):
            add_vm(vm.host)
            add_vcpu(vm)
            add_change(vm)

    url = reverse("vms:change", args=[vm.host.name, vm.uuid, kind])
    assert_constant_queries(root, url, grow)


# --- changes ----------------------------------------------------------------------------------


def mixed_changes(host: Host):
    """A ``grow`` of changes of new VMs, of the same VM, and of the host itself."""
    other = make_host("hv02", "x86_64-4node-basic.xml")
    same = add_vm(host)

    def grow(count: int) -> None:
        for _ in range(count):
            add_change(add_vm(other, pinned=False), kind=Change.Kind.NUMATUNE, status="failed")
            add_change(same, status=Change.Status.QUEUED)
            add_change(None, host)

    return grow


@pytest.mark.parametrize("name", ["changes:list", "changes:export"])
def test_change_list_and_export_with_more_changes(root, host, name):
    assert_constant_queries(root, reverse(name), mixed_changes(host))


@pytest.mark.parametrize("name", ["changes:detail", "changes:status"])
def test_change_detail_with_more_changes_in_its_group(root, vm, name):
    group = uuid.uuid4()
    change = add_change(vm, group_id=group)
    others = itertools.cycle([vm, add_vm(vm.host)])
    assert_constant_queries(
        root,
        reverse(name, args=[change.pk]),
        lambda n: [add_change(next(others), group_id=group) for _ in range(n)],
    )


# --- balancing --------------------------------------------------------------------------------


def test_plan_list_with_more_plans(root, host):
    def grow(count: int) -> None:
        for _ in range(count):
            computed_plan(add_host())

    assert_constant_queries(root, reverse("balancing:list"), grow)


@pytest.mark.parametrize("name", ["balancing:plan", "balancing:plan-status"])
def test_approved_plan_with_more_moved_vms(root, host, admin_user, name):
    """Each size is a new approved plan of the grown host: more VMs to move, more changes."""
    plans: list[BalancingPlan] = []

    def grow(count: int) -> None:
        for _ in range(count):
            add_vm(host, pinned=False, vcpus=1)
        plans.append(approved_plan(host, admin_user))

    def url() -> str:
        return reverse(name, args=[plans[-1].pk])

    assert_constant_queries(root, url, grow)


@pytest.mark.parametrize("worker_queue", ["", "host.hv01"])
def test_ready_plan_with_more_vms(root, host, worker_queue):
    """Without an on-host worker every moved VM's memory follows at its next boot (its
    locality after with its memory where it is, the warning); with one it moves live."""
    host.worker_queue = worker_queue
    host.save(update_fields=["worker_queue"])
    plans: list[BalancingPlan] = []

    def grow(count: int) -> None:
        for _ in range(count):
            add_vm(host, pinned=False, vcpus=1)
        plans.append(computed_plan(host))

    assert_constant_queries(root, lambda: reverse("balancing:plan", args=[plans[-1].pk]), grow)


def test_policy_form_with_more_plans(root, host):
    assert_constant_queries(
        root, reverse("balancing:policy", args=[host.name]), times(computed_plan, host)
    )
