"""Computing a requested plan on a worker (or in the scheduler): :func:`compute_plan` runs
:func:`balancing.planner.plan` on the host's *stored* inventory and records what it was based on
(the last good sync and a digest of the inventory), the before and after assignments, the scores
and the notes: ``ready``, ``not_needed`` (nothing moves) or ``error`` (the planner's message).
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from balancing import planner
from balancing.inputs import demands_for_host, policy_for_host
from balancing.models import BalancingPlan
from balancing.staleness import inventory_digest
from hosts.services import load_topology

log = logging.getLogger(__name__)

Status = BalancingPlan.Status


__all__ = ["NOTHING_MOVES", "NO_TOPOLOGY", "NO_VMS", "compute_plan"]

NO_TOPOLOGY = "no topology: sync the host first"
NO_VMS = "no running VMs on this host: nothing to place"
NOTHING_MOVES = "the current placement is already the best the planner finds: nothing moves"


def _finish(plan: BalancingPlan, status: str, error: str = "") -> BalancingPlan:
    plan.status = status
    plan.error = error
    plan.computed_at = timezone.now()
    plan.save()
    return plan


def compute_plan(plan_id: Any) -> BalancingPlan:
    """Compute a ``computing`` plan from the stored inventory (a worker, or the scheduler).

    Ends ``ready``, ``not_needed`` (nothing moves) or ``error`` with the planner's message
    (e.g. "cannot fit ...") or :data:`NO_TOPOLOGY`. A plan that is no longer computing (a task
    delivered twice) is returned as it is.
    """
    plan = BalancingPlan.objects.select_related("host").get(pk=plan_id)
    if plan.status != Status.COMPUTING:
        log.info("plan %s is %s: not computed again", plan.pk, plan.status)
        return plan
    try:
        return _compute(plan)
    except Exception as exc:
        # A bug must not leave the page polling "computing" forever: say so, then raise.
        log.exception("computing balancing plan %s failed", plan.pk)
        _finish(plan, Status.ERROR, f"planning failed: {type(exc).__name__}: {exc}")
        raise


def _compute(plan: BalancingPlan) -> BalancingPlan:
    host = plan.host
    plan.based_on_sync_at = host.last_sync_ok_at
    policy = policy_for_host(host)
    plan.policy = policy.as_dict()
    topology = load_topology(host)
    demands = demands_for_host(host)
    plan.inventory_digest = inventory_digest(topology, demands)
    plan.demands = [d.as_dict() for d in demands]
    if topology is None:
        return _finish(plan, Status.ERROR, NO_TOPOLOGY)
    plan.before = {d.name: planner.current_assignment(topology, d).as_dict() for d in demands}
    if not demands:
        plan.notes = [NO_VMS]
        return _finish(plan, Status.NOT_NEEDED)
    try:
        result = planner.plan(topology, demands, policy)
    except planner.PlanError as exc:
        return _finish(plan, Status.ERROR, str(exc))
    plan.after = {name: a.as_dict() for name, a in sorted(result.assignments.items())}
    plan.score_before = result.before.as_dict()
    plan.score_after = result.after.as_dict()
    plan.improvement_pct = round(result.improvement_pct, 2)
    plan.moves = len(result.moved)
    plan.notes = list(result.notes)
    problems = planner.validate(topology, demands, result)
    if problems:
        return _finish(
            plan, Status.ERROR, "the planner proposed an invalid placement: " + "; ".join(problems)
        )
    if not result.moved:
        plan.notes = [*plan.notes, NOTHING_MOVES]
        return _finish(plan, Status.NOT_NEEDED)
    try:
        # The order shown for review; start_apply computes it again when approved.
        plan.apply_order = planner.apply_order(topology, demands, result)
    except planner.PlanError as exc:
        return _finish(plan, Status.ERROR, f"no safe order to apply this plan: {exc}")
    return _finish(plan, Status.READY)
