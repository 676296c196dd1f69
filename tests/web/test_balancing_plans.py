"""Balancing plans in the service layer (balancing.services, balancing.inputs).

A seed-shaped host (x86_64-2node-24cpu-ht.xml: node 0 = CPUs 0-5,12-17, node 1 = 6-11,18-23,
32 GiB each) with a VM split over both cells, two unpinned VMs and one pinned the seed's way
(vCPUs on 22-23, emulator on 18-23, memory strict on node 1). The real planner
(balancing.planner.plan) computes every plan here; nothing is faked but the Celery hand-over.
"""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.utils import timezone

from balancing import compute as plan_compute
from balancing import requests as plan_requests
from balancing import staleness as plan_staleness
from balancing.inputs import demands_for_host, policy_for_host
from balancing.models import BalancingPlan, BalancingPolicy
from balancing.planner import Assignment, Policy
from changes.models import Change
from vms.models import VcpuPin, VirtualMachine

pytestmark = [pytest.mark.web, pytest.mark.django_db]

GIB = 1024 * 1024  # KiB
Status = BalancingPlan.Status


def seed_inventory(host_factory, vm_factory, name: str = "hv", **host_fields):
    """The seed-shaped host and its four running VMs (plus one shut off, one gone)."""
    host = host_factory(name, "x86_64-2node-24cpu-ht.xml", **host_fields)
    vms = {
        # split over both cells: vCPUs 0-1 on node 0, 2-3 on node 1
        "db01": vm_factory(
            host, "db01", vcpus=4, pins={0: "0", 1: "1", 2: "6", 3: "7"}, memory_kib=8 * GIB
        ),
        "web01": vm_factory(host, "web01", vcpus=2, memory_kib=4 * GIB),
        "web02": vm_factory(host, "web02", vcpus=2, memory_kib=4 * GIB),
        # the seed's own example: vCPUs on 22 and 23, emulator on 18-23, memory on node 1
        "seed01": vm_factory(
            host,
            "seed01",
            vcpus=2,
            pins={0: "22", 1: "23"},
            memory_kib=4 * GIB,
            emulatorpin="18-23",
            emulatorpin_config="18-23",
            numatune_mode="strict",
            numatune_nodeset="1",
            memory_cells="1",
        ),
    }
    vm_factory(host, "off01", vcpus=2, running=False)
    gone = vm_factory(host, "gone01", vcpus=2)
    gone.gone_at = timezone.now()
    gone.save(update_fields=["gone_at"])
    return host, vms


def computed_plan(host, actor=None) -> BalancingPlan:
    """A plan requested (the Celery hand-over skipped) and computed in this process."""
    with mock.patch("balancing.tasks.compute_plan.apply_async"):
        plan = plan_requests.request_plan(host=host, actor=actor)
    return plan_compute.compute_plan(plan.pk)


@pytest.fixture
def seed(host_factory, vm_factory):
    return seed_inventory(host_factory, vm_factory)


@pytest.fixture
def apply_queued():
    """apply_plan's apply_async, captured: start_apply writes the records, no worker runs."""
    with mock.patch("balancing.tasks.apply_plan.apply_async") as apply_async:
        yield apply_async


# --- inputs -----------------------------------------------------------------------------------


def test_demands_are_the_running_present_vms_from_the_stored_inventory(seed):
    host, vms = seed
    vms["web02"].balancing_locked = True
    vms["web02"].dedicated = True
    vms["web02"].save(update_fields=["balancing_locked", "dedicated"])
    demands = {d.name: d for d in demands_for_host(host)}
    assert sorted(demands) == ["db01", "seed01", "web01", "web02"]  # not off01, not gone01
    db01 = demands["db01"]
    assert db01.vcpus == 4
    assert db01.memory_kib == 8 * GIB
    assert db01.cells == frozenset({0, 1})
    assert dict(db01.vcpupin) == {
        0: frozenset({0}),
        1: frozenset({1}),
        2: frozenset({6}),
        3: frozenset({7}),
    }
    assert db01.emulatorpin is None
    seed01 = demands["seed01"]
    assert seed01.emulatorpin == frozenset(range(18, 24))
    assert seed01.memory_cells == frozenset({1})
    assert demands["web01"].vcpupin == {}
    assert demands["web02"].locked and demands["web02"].dedicated
    assert not demands["web01"].locked and not demands["web01"].dedicated


def test_demands_survive_hostile_stored_strings(seed):
    host, vms = seed
    VcpuPin.objects.filter(vm=vms["db01"], vcpu=0).update(pin_live="0-;<x>")
    VirtualMachine.objects.filter(pk=vms["db01"].pk).update(
        cells="garbage", emulatorpin="99999999999999-"
    )
    db01 = {d.name: d for d in demands_for_host(host)}["db01"]
    assert 0 not in db01.vcpupin
    assert db01.cells == frozenset()
    assert db01.emulatorpin is None


def test_policy_for_host_defaults_and_stored_values(seed):
    host, _ = seed
    assert policy_for_host(host) == Policy()
    BalancingPolicy.objects.create(
        host=host,
        strategy="pack",
        cpu_overcommit=2.0,
        emulator="housekeeping",
        housekeeping="0,12",
        reserved="not a cpuset",
        whole_cores=False,
        memory_reserve_mib=512,
    )
    policy = policy_for_host(host)
    assert policy.strategy == "pack"
    assert policy.cpu_overcommit == 2.0
    assert policy.emulator == "housekeeping"
    assert policy.housekeeping == frozenset({0, 12})
    assert policy.reserved == frozenset()  # unparsable: empty, not a crash
    assert policy.whole_cores is False
    assert policy.memory_reserve_kib == 512 * 1024


# --- request and compute ----------------------------------------------------------------------


def test_request_plan_records_and_queues_on_commit(
    seed, operator_user, django_capture_on_commit_callbacks
):
    host, _ = seed
    host.worker_queue = "host.hv"
    host.save(update_fields=["worker_queue"])
    with (
        mock.patch("balancing.tasks.compute_plan.apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        plan = plan_requests.request_plan(host=host, actor=operator_user)
    assert plan.status == Status.COMPUTING
    assert plan.trigger == BalancingPlan.Trigger.MANUAL
    assert plan.requested_by == operator_user and plan.requested_by_name == "op"
    # Planning writes the database: central workers, even for a host with its own worker.
    apply_async.assert_called_once_with(
        args=[str(plan.pk)], task_id=str(plan.pk), queue="celery", ignore_result=True
    )
    # a second press while it computes returns the same plan
    with mock.patch("balancing.tasks.compute_plan.apply_async"):
        assert plan_requests.request_plan(host=host, actor=operator_user) == plan
    assert BalancingPlan.objects.count() == 1


def test_request_plan_without_worker_queue_uses_the_central_queue(
    seed, operator_user, django_capture_on_commit_callbacks
):
    host, _ = seed
    with (
        mock.patch("balancing.tasks.compute_plan.apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        plan = plan_requests.request_plan(host=host, actor=operator_user)
    apply_async.assert_called_once_with(
        args=[str(plan.pk)], task_id=str(plan.pk), queue="celery", ignore_result=True
    )


def test_a_broker_that_refuses_ends_the_plan_in_error(
    seed, operator_user, django_capture_on_commit_callbacks
):
    host, _ = seed
    refused = OSError("connection refused")
    with (
        mock.patch("balancing.tasks.compute_plan.apply_async", side_effect=refused),
        django_capture_on_commit_callbacks(execute=True),
    ):
        plan = plan_requests.request_plan(host=host, actor=operator_user)
    plan.refresh_from_db()
    assert plan.status == Status.ERROR
    assert plan.error == (
        "could not queue the planning: the task queue (Redis) is not answering: nothing was "
        "queued (connection refused)"
    )


def test_viewer_may_not_plan_or_approve_in_the_service_either(seed, viewer):
    host, _ = seed
    with pytest.raises(PermissionDenied):
        plan_requests.request_plan(host=host, actor=viewer)
    plan = computed_plan(host)
    with pytest.raises(PermissionDenied):
        plan_requests.approve_plan(plan=plan, actor=viewer, reason="sneaky")
    assert Change.objects.count() == 0


def test_compute_plan_on_the_seed_host_gives_a_ready_plan(seed, operator_user):
    host, _ = seed
    plan = computed_plan(host, operator_user)
    assert plan.status == Status.READY, plan.error
    assert plan.computed_at is not None
    assert plan.based_on_sync_at == host.last_sync_ok_at
    assert len(plan.inventory_digest) == 64
    assert sorted(d["name"] for d in plan.demands) == ["db01", "seed01", "web01", "web02"]
    assert sorted(plan.before) == sorted(plan.after) == ["db01", "seed01", "web01", "web02"]
    assert plan.score_before["total"] > plan.score_after["total"]
    assert plan.improvement_pct > 0
    assert plan.moves >= 1
    # the split VM ends on one cell, every vCPU pinned there
    db01 = Assignment.from_dict(plan.after["db01"])
    assert db01.moved
    assert len(db01.cells) == 1
    assert set(db01.vcpupin) == {0, 1, 2, 3}
    assert plan.apply_order and set(plan.apply_order) <= set(plan.after)
    assert plan.policy == Policy().as_dict()
    assert plan.error == ""


def test_plan_with_the_policy_of_the_host(seed):
    host, _ = seed
    BalancingPolicy.objects.create(host=host, reserved="0,12", memory_reserve_mib=1024)
    plan = computed_plan(host)
    assert plan.status == Status.READY, plan.error
    assert plan.policy == policy_for_host(host).as_dict()
    for name, data in plan.after.items():
        assignment = Assignment.from_dict(data)
        if assignment.moved:
            pinned = {cpu for cpus in assignment.vcpupin.values() for cpu in cpus}
            assert not pinned & {0, 12}, name


def test_a_host_with_nothing_to_move_is_not_needed(host_factory, vm_factory):
    host = host_factory("hv", "x86_64-2node-24cpu-ht.xml")
    assert computed_plan(host).status == Status.NOT_NEEDED
    plan = BalancingPlan.objects.get()
    assert plan.notes == [plan_compute.NO_VMS]
    assert plan.moves == 0


def test_no_topology_is_a_planning_error(host_factory, vm_factory):
    host = host_factory("hv", "x86_64-2node-24cpu-ht.xml")
    vm_factory(host, "vm1")
    host.capabilities_xml = ""
    host.save(update_fields=["capabilities_xml"])
    plan = computed_plan(host)
    assert plan.status == Status.ERROR
    assert plan.error == "no topology: sync the host first"


def test_an_infeasible_inventory_is_a_planning_error_with_the_planners_words(
    host_factory, vm_factory
):
    host = host_factory("hv", "x86_64-2node-24cpu-ht.xml")
    # 30 dedicated vCPUs on a 24-thread host: nowhere to put them
    vm_factory(host, "huge", vcpus=30, dedicated=True)
    plan = computed_plan(host)
    assert plan.status == Status.ERROR
    assert plan.error
    assert "planning failed" not in plan.error  # the planner's own message, not a crash


def test_a_crash_in_the_planner_is_recorded_then_raised(seed):
    host, _ = seed
    with (
        mock.patch("balancing.planner.plan", side_effect=RuntimeError("boom")),
        pytest.raises(RuntimeError),
    ):
        computed_plan(host)
    plan = BalancingPlan.objects.get()
    assert plan.status == Status.ERROR
    assert plan.error == "planning failed: RuntimeError: boom"


def test_computing_twice_does_nothing_the_second_time(seed):
    host, _ = seed
    plan = computed_plan(host)
    computed_at = plan.computed_at
    again = plan_compute.compute_plan(plan.pk)
    assert again.computed_at == computed_at


# --- approve ----------------------------------------------------------------------------------


def test_approve_starts_applying_with_one_plan_move_change_per_moved_vm(
    seed, operator_user, apply_queued
):
    host, _ = seed
    plan = computed_plan(host, operator_user)
    changes = plan_requests.approve_plan(
        plan=plan, actor=operator_user, reason="  rebalance after the migration  "
    )
    plan.refresh_from_db()
    assert plan.status == Status.APPLYING
    assert plan.approved_by == operator_user
    assert plan.approved_by_name == "op"
    assert plan.reason == "rebalance after the migration"
    assert len(changes) == plan.moves
    records = Change.objects.filter(group_id=plan.id)
    assert records.count() == plan.moves
    assert {c.kind for c in records} == {Change.Kind.PLAN_MOVE}
    assert {c.actor_name for c in records} == {"op"}
    assert {c.target_name for c in records} == set(plan.apply_order)


def test_approve_refuses_a_blank_reason_under_its_field(seed, operator_user):
    host, _ = seed
    plan = computed_plan(host, operator_user)
    with pytest.raises(ValidationError) as caught:
        plan_requests.approve_plan(plan=plan, actor=operator_user, reason="   ")
    assert "reason" in caught.value.message_dict
    plan.refresh_from_db()
    assert plan.status == Status.READY
    assert Change.objects.count() == 0


def test_approve_refuses_a_plan_that_is_not_ready(seed, operator_user, apply_queued):
    host, _ = seed
    plan = computed_plan(host, operator_user)
    plan_requests.approve_plan(plan=plan, actor=operator_user, reason="once")
    with pytest.raises(ValidationError) as caught:
        plan_requests.approve_plan(plan=plan, actor=operator_user, reason="twice")
    assert "only a plan waiting for approval" in caught.value.message_dict[NON_FIELD_ERRORS][0]
    assert Change.objects.filter(group_id=plan.id).count() == plan.moves


def test_approve_refuses_a_stale_plan_and_marks_it(seed, operator_user):
    host, vms = seed
    plan = computed_plan(host, operator_user)
    # a later sync saw web01 pinned elsewhere
    VcpuPin.objects.filter(vm=vms["web01"], vcpu=0).update(pin_live="3", pin_config="3")
    host.last_sync_ok_at = timezone.now() + timedelta(seconds=5)
    host.save(update_fields=["last_sync_ok_at"])
    with pytest.raises(ValidationError) as caught:
        plan_requests.approve_plan(plan=plan, actor=operator_user, reason="go")
    message = caught.value.message_dict[NON_FIELD_ERRORS][0]
    assert message.startswith("stale: the inventory changed since this plan was computed (sync at")
    assert message.endswith("plan again")
    plan.refresh_from_db()
    assert plan.status == Status.STALE
    assert plan.error == message
    assert Change.objects.count() == 0


def test_a_vm_locked_after_the_plan_makes_it_stale_without_a_sync(seed, operator_user):
    host, vms = seed
    plan = computed_plan(host, operator_user)
    vms["db01"].balancing_locked = True
    vms["db01"].save(update_fields=["balancing_locked"])
    with pytest.raises(ValidationError):
        plan_requests.approve_plan(plan=plan, actor=operator_user, reason="go")
    plan.refresh_from_db()
    assert plan.status == Status.STALE


def test_a_later_sync_that_left_the_inventory_the_same_is_not_stale(
    seed, operator_user, apply_queued
):
    host, _ = seed
    plan = computed_plan(host, operator_user)
    host.last_sync_ok_at = timezone.now() + timedelta(minutes=5)
    host.save(update_fields=["last_sync_ok_at"])
    assert plan_staleness.staleness(plan) == ""
    changes = plan_requests.approve_plan(plan=plan, actor=operator_user, reason="still valid")
    assert changes
    plan.refresh_from_db()
    assert plan.status == Status.APPLYING
