"""The scheduler's balancing (beat entry "balance-hosts" -> balancing.services.balance_hosts).

Per host policy: off does nothing; recommend leaves a ready plan and no change; automatic
applies (change records of kind plan_move by "scheduler") only when the plan improves the score
by at least the policy's threshold with at most its moves, and otherwise records why not.
"""

from __future__ import annotations

from unittest import mock

import pytest
from django_celery_beat.models import PeriodicTask

from balancing import scheduler as plan_scheduler
from balancing.models import BalancingPlan, BalancingPolicy
from changes.models import Change
from tests.web.test_balancing_plans import seed_inventory
from web.tasks import balance_hosts as balance_hosts_task

pytestmark = [pytest.mark.web, pytest.mark.django_db]

Status = BalancingPlan.Status
Mode = BalancingPolicy.Mode


@pytest.fixture
def seed(host_factory, vm_factory):
    return seed_inventory(host_factory, vm_factory)


@pytest.fixture(autouse=True)
def apply_queued():
    """No worker applies anything here: start_apply's records stay queued."""
    with mock.patch("balancing.tasks.apply_plan.apply_async") as apply_async:
        yield apply_async


def policy(host, mode, **fields) -> BalancingPolicy:
    return BalancingPolicy.objects.create(host=host, mode=mode, **fields)


def test_the_default_schedule_runs_balance_hosts_every_15_minutes():
    task = PeriodicTask.objects.select_related("interval").get(name="balance-hosts")
    assert task.task == "balancing.tasks.balance_hosts"
    assert task.interval.every == 900
    assert task.interval.period == "seconds"


def test_no_policy_or_off_does_nothing(seed, host_factory):
    host, _ = seed
    other = host_factory("hv2", "x86_64-2node-24cpu-ht.xml")
    policy(other, Mode.OFF)
    assert plan_scheduler.balance_hosts() == 0
    assert plan_scheduler.balance_host(host) is None
    assert BalancingPlan.objects.count() == 0


def test_recommend_leaves_a_ready_plan_and_no_change(seed):
    host, _ = seed
    policy(host, Mode.RECOMMEND, min_improvement_pct=0, max_moves=10)
    assert balance_hosts_task.apply().get() == 1
    plan = BalancingPlan.objects.get()
    assert plan.status == Status.READY, plan.error
    assert plan.trigger == BalancingPlan.Trigger.SCHEDULER
    assert plan.requested_by is None and plan.requested_by_name == "scheduler"
    assert Change.objects.count() == 0


def test_automatic_below_the_threshold_changes_nothing(seed):
    host, _ = seed
    # a plan that moves VMs never reaches 100 %: moves count in the score after
    policy(host, Mode.AUTOMATIC, min_improvement_pct=100, max_moves=10)
    plan = plan_scheduler.balance_host(host)
    assert plan.status == Status.NOT_NEEDED
    assert plan.error.startswith(f"improvement {plan.improvement_pct:.1f}% below the policy's 100%")
    assert plan.error in plan.notes
    assert plan.moves >= 1
    assert Change.objects.count() == 0


def test_automatic_with_too_many_moves_changes_nothing(seed):
    host, _ = seed
    probe = plan_scheduler.balance_host(policy(host, Mode.RECOMMEND, min_improvement_pct=0).host)
    assert probe.moves >= 2, "the seed host should need at least two moves"
    BalancingPlan.objects.all().delete()
    BalancingPolicy.objects.filter(host=host).update(
        mode=Mode.AUTOMATIC, min_improvement_pct=0, max_moves=1
    )
    plan = plan_scheduler.balance_host(host)
    assert plan.status == Status.NOT_NEEDED
    assert plan.error == f"would move {plan.moves} VMs, policy allows 1"
    assert Change.objects.count() == 0


def test_automatic_with_a_low_threshold_applies_as_the_scheduler(seed, apply_queued):
    host, _ = seed
    policy(host, Mode.AUTOMATIC, min_improvement_pct=1, max_moves=10)
    assert plan_scheduler.balance_hosts() == 1
    plan = BalancingPlan.objects.get()
    assert plan.status == Status.APPLYING, plan.error
    assert plan.approved_by is None and plan.approved_by_name == "scheduler"
    before, after = plan.score_before["total"], plan.score_after["total"]
    assert plan.reason == (
        f"automatic balancing: score {before:.1f} -> {after:.1f} (-{plan.improvement_pct:.1f}%)"
    )
    records = Change.objects.filter(group_id=plan.id)
    assert records.count() == plan.moves >= 1
    assert {c.kind for c in records} == {Change.Kind.PLAN_MOVE}
    assert {c.actor_name for c in records} == {"scheduler"}
    assert {c.actor_id for c in records} == {None}
    assert {c.reason for c in records} == {plan.reason}


def test_automatic_waits_for_changes_still_running_on_the_host(seed):
    host, vms = seed
    Change.objects.create(
        actor_name="alice",
        host=host,
        vm=vms["web01"],
        target_name="web01",
        kind="vcpupin",
        params={"vcpu": 0, "cpuset": "1"},
        reason="by hand",
    )
    policy(host, Mode.AUTOMATIC, min_improvement_pct=0, max_moves=10)
    plan = plan_scheduler.balance_host(host)
    assert plan.status == Status.NOT_NEEDED
    assert "still queued or running" in plan.error
    assert Change.objects.filter(kind=Change.Kind.PLAN_MOVE).count() == 0


def test_an_unchanged_inventory_is_not_planned_again(seed):
    host, vms = seed
    row = policy(host, Mode.RECOMMEND, min_improvement_pct=0, max_moves=10)
    first = plan_scheduler.balance_host(host)
    assert first.status == Status.READY
    assert plan_scheduler.balance_host(host) is None
    assert BalancingPlan.objects.count() == 1
    # the inventory changes: a new plan, and the old one can no longer be approved
    vms["web01"].memory_kib *= 2
    vms["web01"].save(update_fields=["memory_kib"])
    second = plan_scheduler.balance_host(host)
    assert second is not None and second.pk != first.pk
    first.refresh_from_db()
    assert first.status == Status.STALE
    # a policy edit is worth a new plan too
    row.max_moves = 9
    row.save()
    assert plan_scheduler.balance_host(host) is not None
    assert BalancingPlan.objects.count() == 3


def test_one_broken_host_does_not_stop_the_others(seed, host_factory, vm_factory):
    host, _ = seed
    other, _ = seed_inventory(host_factory, vm_factory, name="hv2")
    policy(host, Mode.RECOMMEND, min_improvement_pct=0)
    policy(other, Mode.RECOMMEND, min_improvement_pct=0)
    real = plan_scheduler.balance_host

    def balance(h):
        if h.name == "hv":
            raise RuntimeError("boom")
        return real(h)

    with mock.patch.object(plan_scheduler, "balance_host", side_effect=balance):
        assert plan_scheduler.balance_hosts() == 1
    assert BalancingPlan.objects.get().host == other
