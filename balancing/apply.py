"""Applying an approved balancing plan: one change record per moved VM, in a safe order.

:func:`start_apply` writes every record up front (kind ``plan_move``, ``group_id`` = the plan's
id, status ``queued``), so a reviewer sees the whole plan in the change history at once, and
queues one :func:`apply_plan` task. That task runs the records one after another through the
same worker path as any change (:func:`changes.executor.apply_change`: per-VM lock, before and
after snapshots, read-back), in the order of :func:`vms.placement.apply_order` — no CPU pool or
cell is over its capacity at any step — and stops at the first failure: the records not yet
run end ``cancelled`` saying which change failed, and the plan ``apply_failed``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from balancing.models import BalancingPlan
from changes import executor
from changes.models import Change
from changes.recording import record_change
from hosts.services import load_topology
from vms import placement
from vms.models import VirtualMachine

log = logging.getLogger(__name__)

Status = BalancingPlan.Status


class PlanNotApplicable(Exception):
    """The plan cannot be applied (not ready, no safe order, VM gone); the message says why."""


def change_params(plan: BalancingPlan, assignment: placement.Assignment, step: int) -> dict:
    """A ``plan_move`` change's params from one VM's planned assignment (JSON types)."""
    data = assignment.as_dict()
    return {
        "plan": str(plan.id),
        "step": step,
        "cells": data["cells"],
        "vcpupin": data["vcpupin"],
        "emulatorpin": data["emulatorpin"],
        "nodeset": data["nodeset"],
        "mode": data["mode"],
    }


def _plan_object(plan: BalancingPlan) -> tuple[Any, list[placement.VmDemand], placement.Plan]:
    topology = load_topology(plan.host)
    if topology is None:
        raise PlanNotApplicable(f"host {plan.host.name} has no stored topology: sync it first")
    demands = [placement.VmDemand.from_dict(d) for d in plan.demands]
    after = {name: placement.Assignment.from_dict(a) for name, a in plan.after.items()}
    plan_obj = placement.Plan(
        assignments=after,
        before=placement.score(topology, []),
        after=placement.score(topology, []),
        policy=placement.Policy.from_dict(plan.policy),
    )
    return topology, demands, plan_obj


def start_apply(plan: BalancingPlan, actor: Any, reason: str) -> list[Change]:
    """Record one ``plan_move`` change per moved VM and queue :func:`apply_plan`.

    The caller (``balancing.services.approve_plan``) checked permission, staleness and the
    reason. *actor* None is the scheduler.
    """
    if plan.status != Status.READY:
        raise PlanNotApplicable(f"plan is {plan.get_status_display()}, not waiting for approval")
    topology, demands, plan_obj = _plan_object(plan)
    try:
        order = placement.apply_order(topology, demands, plan_obj)
    except placement.PlanError as exc:
        raise PlanNotApplicable(f"no safe order to apply this plan: {exc}") from exc
    vms = {
        vm.name: vm
        for vm in VirtualMachine.objects.present().filter(host=plan.host, name__in=order)
    }
    missing = [name for name in order if name not in vms]
    if missing:
        raise PlanNotApplicable(f"VM(s) no longer on the host: {', '.join(missing)}")
    changes: list[Change] = []
    with transaction.atomic():
        for step, name in enumerate(order, 1):
            vm = vms[name]
            changes.append(
                record_change(
                    actor=actor,
                    host=plan.host,
                    vm=vm,
                    target_name=vm.name,
                    kind=Change.Kind.PLAN_MOVE,
                    params=change_params(plan, plan_obj.assignments[name], step),
                    # A shut-off VM can only be changed in its config.
                    scope="live+config" if vm.is_running else "config",
                    reason=reason,
                    group_id=plan.id,
                    enqueue_on_commit=False,
                )
            )
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
        plan_id, queue = str(plan.id), plan.host.worker_queue
        transaction.on_commit(lambda: _enqueue(plan_id, queue))
    log.info("plan %s approved by %s: %d changes", plan.id, plan.approved_by_name, len(changes))
    return changes


def _enqueue(plan_id: str, queue: str) -> None:
    from balancing import tasks  # tasks import this module

    options: dict[str, Any] = {"args": [plan_id]}
    if queue:
        options["queue"] = queue
    try:
        tasks.apply_plan.apply_async(**options)
    except Exception as exc:  # broker down: say so on the plan and its records
        log.exception("could not queue plan %s", plan_id)
        _stop(plan_id, f"could not queue the plan: {exc}", failed_change=None)


def _ordered_changes(plan: BalancingPlan) -> list[Change]:
    changes = list(Change.objects.filter(group_id=plan.id, kind=Change.Kind.PLAN_MOVE))
    return sorted(changes, key=lambda c: c.params.get("step", 0))


def _stop(plan_id: str, why: str, failed_change: Change | None) -> None:
    """End the plan apply_failed; its records not yet run end cancelled, saying why."""
    plan = BalancingPlan.objects.get(pk=plan_id)
    pending = Change.objects.filter(group_id=plan.id, status=Change.Status.QUEUED)
    not_run = sorted(pending.values_list("target_name", flat=True))
    pending.update(
        status=Change.Status.CANCELLED,
        finished_at=timezone.now(),
        outcome=f"not attempted: {why}",
    )
    done = Change.objects.filter(group_id=plan.id, status=Change.Status.SUCCEEDED).count()
    plan.status = Status.APPLY_FAILED
    plan.finished_at = timezone.now()
    plan.outcome = (
        f"stopped: {why}. {done} change(s) applied"
        + (f"; not attempted: {', '.join(not_run)}" if not_run else "")
        + "."
    )
    plan.save(update_fields=["status", "finished_at", "outcome"])


def apply_plan(plan_id: str) -> BalancingPlan:
    """The worker side: run the plan's records in order, stop at the first failure."""
    plan = BalancingPlan.objects.select_related("host").get(pk=plan_id)
    if plan.status != Status.APPLYING:
        log.info("plan %s is %s: not applied (again)", plan.pk, plan.status)
        return plan
    applied: list[str] = []
    for change in _ordered_changes(plan):
        if change.is_finished:  # a second delivery of this task: skip what already ran
            if change.status == Change.Status.SUCCEEDED:
                applied.append(change.target_name)
                continue
            _stop(
                str(plan.pk), f"change {change.pk} ({change.target_name}) {change.status}", change
            )
            return BalancingPlan.objects.get(pk=plan.pk)
        result = executor.apply_change(str(change.pk))
        if result.status != Change.Status.SUCCEEDED:
            why = f"change {result.pk} of VM {result.target_name} {result.status}" + (
                f": {result.error}" if result.error else ""
            )
            _stop(str(plan.pk), why, result)
            return BalancingPlan.objects.get(pk=plan.pk)
        applied.append(result.target_name)
    plan.status = Status.APPLIED
    plan.finished_at = timezone.now()
    plan.outcome = (
        f"{len(applied)} change(s) applied in order: {', '.join(applied)}"
        if applied
        else "nothing to apply"
    )
    plan.save(update_fields=["status", "finished_at", "outcome"])
    return plan


def reconcile_plans(now: Any = None) -> int:
    """Periodic: plans left behind by a dead worker end with what their records say.

    - ``applying`` with no change of the plan still queued or running (the changes' own
      reconciler ended the ones a lost task left behind): ``applied`` when every change
      succeeded, else ``apply_failed`` listing how each ended;
    - ``computing`` for longer than ``NUMAPORTAL_CHANGE_QUEUED_TIMEOUT``: ``error``, the planning
      task was lost.
    Returns how many plans were ended.
    """
    from datetime import timedelta

    from django.conf import settings

    now = now or timezone.now()
    ended = 0
    for plan in BalancingPlan.objects.filter(status=Status.APPLYING):
        changes = Change.objects.filter(group_id=plan.id)
        if changes.filter(status__in=Change.ACTIVE_STATUSES).exists():
            continue
        statuses = dict(changes.values_list("target_name", "status"))
        failed = sorted(name for name, st in statuses.items() if st != Change.Status.SUCCEEDED)
        plan.status = Status.APPLY_FAILED if failed else Status.APPLIED
        plan.finished_at = now
        plan.outcome = "ended by the reconciler (its worker was lost): " + (
            "; ".join(f"{name} {statuses[name]}" for name in failed)
            if failed
            else f"all {len(statuses)} change(s) succeeded"
        )
        plan.save(update_fields=["status", "finished_at", "outcome"])
        ended += 1
    lost = now - timedelta(seconds=settings.NUMAPORTAL_CHANGE_QUEUED_TIMEOUT)
    ended += BalancingPlan.objects.filter(status=Status.COMPUTING, created_at__lt=lost).update(
        status=Status.ERROR,
        error="never computed: the planning task was lost (no worker took it); plan again",
    )
    return ended
