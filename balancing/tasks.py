"""Celery tasks for balancing: thin wrappers over the worker side (compute, apply, reconcile).

The scheduler's sweep (``balancing.tasks.balance_hosts``) is in :mod:`web.tasks`: it approves
plans, which queues :func:`apply_plan` here, so it cannot live in this module without a circle.
"""

from __future__ import annotations

from celery import shared_task

from balancing import apply, compute, reconcile
from balancing.models import BalancingPlan


@shared_task(name="balancing.tasks.apply_plan")
def apply_plan(plan_id: str) -> dict[str, str]:
    """Run an approved plan's change records in order; stops at the first failure."""
    try:
        plan = apply.apply_plan(plan_id)
    except BalancingPlan.DoesNotExist:
        return {"plan": str(plan_id), "status": "missing", "outcome": "no such plan"}
    return {"plan": str(plan.pk), "status": plan.status, "outcome": plan.outcome}


@shared_task(name="balancing.tasks.compute_plan")
def compute_plan(plan_id: str) -> dict[str, str]:
    """Compute a requested plan (task id = plan id); the plan row says how it ended."""
    try:
        plan = compute.compute_plan(plan_id)
    except BalancingPlan.DoesNotExist:
        return {"plan": str(plan_id), "status": "missing", "error": "no such plan"}
    return {"plan": str(plan.pk), "status": plan.status, "error": plan.error}


@shared_task(name="balancing.tasks.reconcile_plans")
def reconcile_plans() -> int:
    """Periodic: plans left applying or computing by a dead worker end with what happened."""
    return reconcile.reconcile_plans()
