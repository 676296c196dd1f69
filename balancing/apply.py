"""Applying an approved balancing plan on a worker: :func:`apply_plan` runs the plan's change
records one after another through the same worker path as any change
(:func:`changes.executor.apply_change`: per-VM lock, before and after snapshots, read-back), in
the order of :func:`balancing.planner.apply_order` — no CPU pool or cell is over its capacity at
any step — and stops at the first failure: the records not yet run end ``cancelled`` saying which
change failed, and the plan ``apply_failed``. Approving (writing the records, queueing this) is
:func:`balancing.requests.approve_plan`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from balancing import planner
from balancing.models import BalancingPlan
from changes import executor
from changes.kinds.memory_move import method_for, refusal
from changes.kinds.validation import validate_change
from changes.models import Change
from hosts.services import load_topology
from numaportal.virt.cpuset import parse_nodeset

log = logging.getLogger(__name__)

Status = BalancingPlan.Status


__all__ = [
    "PlanNotApplicable",
    "apply_plan",
    "change_params",
    "memory_follows",
    "memory_move_params",
    "plan_object",
    "stop",
]


class PlanNotApplicable(Exception):
    """The plan cannot be applied (not ready, no safe order, VM gone); the message says why."""


def change_params(plan: BalancingPlan, assignment: planner.Assignment, step: int) -> dict:
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


def plan_object(plan: BalancingPlan) -> tuple[Any, list[planner.VmDemand], planner.Plan]:
    topology = load_topology(plan.host)
    if topology is None:
        raise PlanNotApplicable(f"host {plan.host.name} has no stored topology: sync it first")
    demands = [planner.VmDemand.from_dict(d) for d in plan.demands]
    after = {name: planner.Assignment.from_dict(a) for name, a in plan.after.items()}
    plan_obj = planner.Plan(
        assignments=after,
        before=planner.score(topology, []),
        after=planner.score(topology, []),
        policy=planner.Policy.from_dict(plan.policy),
    )
    return topology, demands, plan_obj


def memory_move_params(vm: Any, move: dict) -> dict | None:
    """The ``memory_move`` that follows a running VM's ``plan_move`` to its new cells, when its
    memory can move live (its numatune and its host's own worker allow it); None when its
    memory follows at the next boot (:func:`memory_follows` says why)."""
    if memory_follows(vm) or _nothing_to_move(vm, move["nodeset"]):
        return None
    try:
        checked = validate_change(vm, Change.Kind.MEMORY_MOVE, {"cells": move["nodeset"]}, "live")
    except ValidationError:
        return None
    return {**checked, "plan": move["plan"], "step": move["step"]}


def _nothing_to_move(vm: Any, nodeset: str) -> bool:
    """Its memory is all on the new cells already (its last sample says so), or the host has
    one cell, where memory has nowhere else to be."""
    cells = parse_nodeset(nodeset)
    rows = list(vm.cell_memory.all())
    if rows:
        return all(r.cell_id in cells or r.own_mib < 1.0 for r in rows)
    return vm.host.cells.count() <= 1


def memory_follows(vm: Any) -> str:
    """Why a moved VM's memory stays until its next boot; "" when it moves with the plan."""
    if not vm.is_running:
        return "shut off: its memory is placed at its next boot"
    if not vm.host.worker_queue:
        return "its host has no on-host worker to read and move its memory"
    if method_for(vm.numatune_mode) is None:
        return f"follows at the next boot: {refusal(vm.numatune_mode)}"
    return ""


#: A VM's records in a plan run in this order within its step: pins first, then its memory.
_KIND_ORDER = {Change.Kind.PLAN_MOVE: 0, Change.Kind.MEMORY_MOVE: 1}


def _ordered_changes(plan: BalancingPlan) -> list[Change]:
    changes = list(Change.objects.filter(group_id=plan.id, kind__in=list(_KIND_ORDER)))
    return sorted(changes, key=lambda c: (c.params.get("step", 0), _KIND_ORDER[c.kind]))


def stop(plan_id: str, why: str, failed_change: Change | None) -> None:
    """End the plan apply_failed; its records not yet run end cancelled, saying why."""
    plan = BalancingPlan.objects.get(pk=plan_id)
    pending = Change.objects.filter(group_id=plan.id, status=Change.Status.QUEUED)
    # A VM may have two records (its pins, then its memory): name it once.
    not_run = sorted(set(pending.values_list("target_name", flat=True)))
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
            stop(str(plan.pk), f"change {change.pk} ({change.target_name}) {change.status}", change)
            return BalancingPlan.objects.get(pk=plan.pk)
        result = executor.apply_change(str(change.pk))
        if result.status != Change.Status.SUCCEEDED:
            why = f"change {result.pk} of VM {result.target_name} {result.status}" + (
                f": {result.error}" if result.error else ""
            )
            stop(str(plan.pk), why, result)
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
