"""Asking for balancing: request a plan (computed by a worker), approve a ready one (its change
records written, the apply task queued).

- :func:`request_plan` (operators, ``changes.add_change``) writes the plan row (``computing``)
  and queues :func:`balancing.compute.compute_plan` once committed, with the plan's id as the
  Celery task id;
- :func:`approve_plan` (operators, or None: the scheduler) refuses a plan that is not ready, a
  blank reason and a **stale** plan (the inventory differs from the one it was computed from),
  then writes one ``plan_move`` change per moved VM up front (``group_id`` = the plan's id,
  status ``queued``), so a reviewer sees the whole plan in the change history at once, and
  queues one :func:`balancing.apply.apply_plan` task.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.utils import timezone

from balancing import planner, tasks
from balancing.access import require_operator
from balancing.apply import (
    PlanNotApplicable,
    change_params,
    memory_move_params,
    plan_object,
    stop,
)
from balancing.models import BalancingPlan
from balancing.staleness import staleness
from changes.models import Change
from changes.recording import SCHEDULER_ACTOR, reason_errors, record_change
from hosts.models import Host
from numaportal import queueing
from vms.models import VirtualMachine

log = logging.getLogger(__name__)

Status = BalancingPlan.Status


__all__ = ["DUPLICATE_WINDOW", "approve_plan", "request_plan", "start_apply"]

#: A second "Plan balancing" while a plan of the host is still computing returns that plan.
DUPLICATE_WINDOW = timedelta(minutes=5)


def request_plan(
    host: Host, actor: Any, trigger: str = BalancingPlan.Trigger.MANUAL
) -> BalancingPlan:
    """Write a ``computing`` plan for *host* and queue :func:`compute_plan` once committed.

    *actor* None is the scheduler. Queued to the central workers (planning reads and writes
    the database), with the plan's id as the task id. An operator who presses the
    button twice gets the plan that is still computing.
    """
    require_operator(actor)
    if host.removed_at is not None:
        raise ValidationError({NON_FIELD_ERRORS: [f"host {host.name} was removed"]})
    with transaction.atomic():
        running = (
            BalancingPlan.objects.filter(
                host=host,
                status=Status.COMPUTING,
                trigger=trigger,
                created_at__gte=timezone.now() - DUPLICATE_WINDOW,
            )
            .order_by("-created_at")
            .first()
        )
        if running is not None:
            return running
        plan = BalancingPlan.objects.create(
            host=host,
            status=Status.COMPUTING,
            trigger=trigger,
            requested_by=actor,
            requested_by_name=actor.get_username() if actor is not None else SCHEDULER_ACTOR,
        )
        plan_id = str(plan.id)
        transaction.on_commit(lambda: _enqueue_compute(plan_id))
    log.info("balancing plan %s of %s requested by %s", plan.id, host.name, plan.requested_by_name)
    return plan


def _enqueue_compute(plan_id: str) -> None:
    def refused(exc: Exception) -> None:  # the plan says so instead of "computing" forever
        BalancingPlan.objects.filter(pk=plan_id, status=Status.COMPUTING).update(
            status=Status.ERROR,
            computed_at=timezone.now(),
            error=f"could not queue the planning: {queueing.queue_refusal(exc)}",
        )

    queueing.enqueue(tasks.compute_plan, [plan_id], task_id=plan_id, refused=refused)


def approve_plan(plan: BalancingPlan, actor: Any, reason: str) -> list[Change]:
    """Approve a ``ready`` plan and start applying it; its change records (one per moved VM).

    Refused with a :class:`ValidationError` (``reason`` for a blank reason, non-field for the
    rest): a plan that is not waiting for approval, and a stale plan — which is then marked
    ``stale``. *actor* None is the scheduler; a user needs the operator role
    (:class:`PermissionDenied`).
    """
    require_operator(actor)
    stale = ""
    with transaction.atomic():
        locked = BalancingPlan.objects.select_for_update().select_related("host").get(pk=plan.pk)
        if locked.status != Status.READY:
            raise ValidationError(
                {
                    NON_FIELD_ERRORS: [
                        f"this plan is {locked.get_status_display()}: only a plan waiting for "
                        "approval can be applied"
                    ]
                }
            )
        stale = staleness(locked)
        if stale:
            locked.status = Status.STALE
            locked.error = stale
            locked.save(update_fields=["status", "error"])
        else:
            errors = reason_errors(reason)
            if errors:
                raise ValidationError(errors)
            try:
                changes = start_apply(locked, actor, reason)
            except PlanNotApplicable as exc:
                raise ValidationError({NON_FIELD_ERRORS: [str(exc)]}) from exc
    if stale:
        plan.refresh_from_db()
        raise ValidationError({NON_FIELD_ERRORS: [stale], **reason_errors(reason)})
    plan.refresh_from_db()
    return changes


def start_apply(plan: BalancingPlan, actor: Any, reason: str) -> list[Change]:
    """Record one ``plan_move`` change per moved VM and queue :func:`apply_plan`.

    The caller (``balancing.services.approve_plan``) checked permission, staleness and the
    reason. *actor* None is the scheduler.
    """
    if plan.status != Status.READY:
        raise PlanNotApplicable(f"plan is {plan.get_status_display()}, not waiting for approval")
    topology, demands, plan_obj = plan_object(plan)
    try:
        order = planner.apply_order(topology, demands, plan_obj)
    except planner.PlanError as exc:
        raise PlanNotApplicable(f"no safe order to apply this plan: {exc}") from exc
    vms = {
        vm.name: vm
        for vm in VirtualMachine.objects.present()
        .filter(host=plan.host, name__in=order)
        .select_related("host")
    }
    missing = [name for name in order if name not in vms]
    if missing:
        raise PlanNotApplicable(f"VM(s) no longer on the host: {', '.join(missing)}")
    changes: list[Change] = []

    def record(vm: VirtualMachine, kind: str, params: dict, scope: str) -> None:
        # Recorded queued, run one after another by apply_plan (not enqueued each).
        changes.append(
            record_change(
                actor=actor,
                host=plan.host,
                vm=vm,
                target_name=vm.name,
                kind=kind,
                params=params,
                scope=scope,
                reason=reason,
                group_id=plan.id,
                enqueue_on_commit=False,
            )
        )

    with transaction.atomic():
        for step, name in enumerate(order, 1):
            vm = vms[name]
            params = change_params(plan, plan_obj.assignments[name], step)
            # A shut-off VM can only be changed in its config.
            scope = Change.Scope.BOTH if vm.is_running else Change.Scope.CONFIG
            record(vm, Change.Kind.PLAN_MOVE, params, scope)
            memory = memory_move_params(vm, params)
            if memory is not None:
                # Right after its pins, in the same safe order: the memory follows the vCPUs.
                record(vm, Change.Kind.MEMORY_MOVE, memory, Change.Scope.LIVE)
        plan.status = Status.APPLYING
        plan.approved_by = actor
        plan.approved_by_name = actor.get_username() if actor is not None else "scheduler"
        plan.approved_at = timezone.now()
        plan.reason = reason.strip()
        plan.apply_order = order
        plan.save(
            update_fields=[
                "status",
                "approved_by",
                "approved_by_name",
                "approved_at",
                "reason",
                "apply_order",
            ]
        )
        plan_id = str(plan.id)
        transaction.on_commit(lambda: _enqueue_apply(plan_id))
    log.info("plan %s approved by %s: %d changes", plan.id, plan.approved_by_name, len(changes))
    return changes


def _enqueue_apply(plan_id: str) -> None:
    def refused(exc: Exception) -> None:  # say so on the plan and its records
        stop(
            plan_id, f"could not queue the plan: {queueing.queue_refusal(exc)}", failed_change=None
        )

    queueing.enqueue(tasks.apply_plan, [plan_id], refused=refused)
