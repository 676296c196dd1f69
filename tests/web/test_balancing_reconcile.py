"""Plans and their changes left behind by a dead worker are ended, not left running forever."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import models
from django.utils import timezone

from balancing import reconcile as plan_reconcile
from balancing.models import BalancingPlan
from changes import reconcile
from changes.models import Change
from changes.recording import record_change

pytestmark = [pytest.mark.web, pytest.mark.django_db]

HOUR = 3600


@pytest.fixture
def host(host_factory):
    # Nothing answers there: the reconciler's read-back fails fast and says so.
    return host_factory("hv1", uri="qemu+tcp://127.0.0.1:1/system")


def backdate(change: Change, **fields) -> None:
    """Move a record's timestamps into the past (the append-only guard refuses created_at,
    so go around it with the plain QuerySet.update, as only a test may)."""
    models.QuerySet.update(Change.objects.filter(pk=change.pk), **fields)


def plan_change(host, vm, group, operator, status=Change.Status.QUEUED) -> Change:
    change = record_change(
        actor=operator,
        host=host,
        vm=vm,
        target_name=vm.name,
        kind=Change.Kind.PLAN_MOVE,
        params={"plan": str(group), "step": 1},
        scope="live+config",
        reason="plan",
        group_id=group,
        enqueue_on_commit=False,
    )
    Change.objects.filter(pk=change.pk).update(status=status)
    return Change.objects.get(pk=change.pk)


def test_a_queued_change_waiting_its_turn_in_a_progressing_plan_is_not_lost(
    host, vm_factory, operator
):
    group = uuid.uuid4()
    first = plan_change(host, vm_factory(host, "alpha"), group, operator, Change.Status.RUNNING)
    second = plan_change(host, vm_factory(host, "beta"), group, operator)
    long_ago = timezone.now() - timedelta(seconds=2 * HOUR)
    backdate(first, created_at=long_ago, started_at=timezone.now() - timedelta(minutes=1))
    backdate(second, created_at=long_ago)
    assert reconcile.reconcile_stale_changes(queued_older_than_s=HOUR) == 0
    assert Change.objects.get(pk=second.pk).status == Change.Status.QUEUED

    # The plan's worker died: nothing of the group started for longer than the timeout.
    backdate(first, started_at=long_ago)
    reconcile.reconcile_stale_changes(older_than_s=HOUR, queued_older_than_s=HOUR)
    second.refresh_from_db()
    assert second.status == Change.Status.FAILED
    assert second.error.startswith("never started (task lost)")


def test_an_applying_plan_whose_changes_all_ended_is_finished(host, vm_factory, operator):
    plan = BalancingPlan.objects.create(
        host=host, status=BalancingPlan.Status.APPLYING, requested_by_name="ops"
    )
    done = plan_change(host, vm_factory(host, "alpha"), plan.id, operator, Change.Status.SUCCEEDED)
    lost = plan_change(host, vm_factory(host, "beta"), plan.id, operator, Change.Status.RUNNING)
    assert plan_reconcile.reconcile_plans() == 0  # a change still runs: the plan is alive
    Change.objects.filter(pk=lost.pk).update(status=Change.Status.FAILED)
    assert plan_reconcile.reconcile_plans() == 1
    plan.refresh_from_db()
    assert plan.status == BalancingPlan.Status.APPLY_FAILED
    assert "beta failed" in plan.outcome and done.target_name not in plan.outcome


def test_a_plan_nobody_computed_ends_in_error(host, settings):
    plan = BalancingPlan.objects.create(host=host, requested_by_name="ops")
    assert plan_reconcile.reconcile_plans() == 0
    later = timezone.now() + timedelta(seconds=settings.NUMAPORTAL_CHANGE_QUEUED_TIMEOUT + 1)
    assert plan_reconcile.reconcile_plans(now=later) == 1
    plan.refresh_from_db()
    assert plan.status == BalancingPlan.Status.ERROR
    assert "planning task was lost" in plan.error
