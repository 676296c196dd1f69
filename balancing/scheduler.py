"""The scheduler's balancing (beat entry ``balance-hosts``): every host whose
:class:`~balancing.models.BalancingPolicy` is not off gets a plan computed now; it is left for
approval (recommend) or approved as the scheduler (automatic) when it improves the score enough
with few enough moves, and otherwise records why not.

A host is planned again when its inventory changed since the scheduler's last plan, or when a
VM fell below the policy's locality threshold that the last plan did not know about (trigger
"locality", :mod:`balancing.locality`): memory can drift off a VM's cells without any change
the inventory sync would see.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery

from balancing import locality
from balancing.compute import compute_plan
from balancing.inputs import demands_for_hosts
from balancing.models import BalancingPlan, BalancingPolicy
from balancing.requests import approve_plan
from balancing.staleness import inventory_digest
from changes.models import Change
from changes.recording import SCHEDULER_ACTOR
from hosts.models import Host
from hosts.services import load_topology

log = logging.getLogger(__name__)

Status = BalancingPlan.Status


__all__ = ["balance_host", "balance_hosts"]


def _scheduler_refusal(plan: BalancingPlan, policy: BalancingPolicy) -> str:
    """Why the scheduler does not go ahead with a ready plan under *policy*; "" when it does."""
    improvement = plan.improvement_pct or 0.0
    if improvement < policy.min_improvement_pct:
        return f"improvement {improvement:.1f}% below the policy's {policy.min_improvement_pct:g}%"
    if plan.moves > policy.max_moves:
        return f"would move {plan.moves} VMs, policy allows {policy.max_moves}"
    return ""


def _automatic_refusal(host: Host) -> str:
    """Why the scheduler must not apply anything on *host* now; "" when it may."""
    if host.sync_status == Host.SyncStatus.ERROR:
        return "not applied automatically: the host's last sync failed, its inventory may be old"
    active = Change.objects.filter(host=host, status__in=Change.ACTIVE_STATUSES).count()
    if active:
        return (
            f"not applied automatically: {active} change(s) to this host are still queued "
            "or running"
        )
    return ""


def _automatic_reason(plan: BalancingPlan) -> str:
    before = (plan.score_before or {}).get("total", 0)
    after = (plan.score_after or {}).get("total", 0)
    return (
        f"automatic balancing: score {before:.1f} -> {after:.1f} "
        f"(-{plan.improvement_pct or 0:.1f}%)"
    )


SCHEDULED_TRIGGERS = (BalancingPlan.Trigger.SCHEDULER, BalancingPlan.Trigger.LOCALITY)


@dataclass(frozen=True)
class SweepInputs:
    """What the scheduler decides from, for every host of a sweep at once (a fixed number of
    queries whatever the number of hosts, :func:`sweep_inputs`); each host id -> its value."""

    policies: dict[int, BalancingPolicy]
    applying: frozenset[int]
    demands: dict[int, list]
    below: dict[int, dict[str, float]]
    last_plan: dict[int, BalancingPlan]


#: The inputs of the sweep running now (:func:`balance_hosts`), which :func:`balance_host`
#: reads instead of asking for its host's alone.
_SWEEP: ContextVar[SweepInputs | None] = ContextVar("balancing_sweep", default=None)


def sweep_inputs(hosts: list[Host]) -> SweepInputs:
    """Six queries for any number of hosts: their policies, hosts with a plan being applied,
    the running VMs and their vCPUs (the planner's demands), the VMs below the locality
    threshold, and each host's last plan by the scheduler."""
    ids = [host.pk for host in hosts]
    last_ids = (
        Host.objects.filter(pk__in=ids)
        .annotate(
            last=Subquery(
                BalancingPlan.objects.filter(host=OuterRef("pk"), trigger__in=SCHEDULED_TRIGGERS)
                .order_by("-created_at")
                .values("pk")[:1]
            )
        )
        .values("last")
    )
    return SweepInputs(
        policies={
            policy.host_id: policy for policy in BalancingPolicy.objects.filter(host__in=ids)
        },
        applying=frozenset(
            BalancingPlan.objects.filter(host__in=ids, status=Status.APPLYING).values_list(
                "host_id", flat=True
            )
        ),
        demands=demands_for_hosts(hosts),
        below=locality.below_threshold_by_host(hosts),
        last_plan={
            plan.host_id: plan
            for plan in BalancingPlan.objects.filter(pk__in=last_ids).only(
                "host_id", "inventory_digest", "created_at", "status", "locality_below"
            )
        },
    )


def _unchanged_since_last_run(
    last: BalancingPlan | None, policy: BalancingPolicy, digest: str, below: dict[str, float]
) -> bool:
    """The scheduler's last plan of the host (*last*) saw this inventory under this policy,
    and every VM below the locality threshold now, and did not lead to anything applied:
    computing it again would only write the same row."""
    return bool(
        last is not None
        and last.inventory_digest == digest
        and last.created_at >= policy.updated_at
        and last.status in (Status.READY, Status.NOT_NEEDED, Status.ERROR)
        # A VM that recovered is no reason to plan; one that newly fell below is.
        and set(below) <= set(last.locality_below or {})
    )


def _locality_note(below: dict[str, float], threshold: float) -> str:
    vms = ", ".join(f"{name} {value:.2f}" for name, value in sorted(below.items()))
    return f"planned because locality is below the policy's {threshold:.2f}: {vms}"


def balance_host(host: Host) -> BalancingPlan | None:
    """One host under its policy: compute a plan now (trigger "scheduler", or "locality" when
    a VM is below the policy's locality threshold), then leave it for approval (recommend) or
    approve it as the scheduler (automatic) when it improves the score by at least the
    policy's threshold with at most its moves; otherwise the plan is ``not_needed`` and says
    why. None when the policy is off or there is nothing new to do."""
    inputs = _SWEEP.get()
    if inputs is None or host.pk not in inputs.policies:  # not in a sweep: this host's alone
        inputs = sweep_inputs([host])
    # Within a sweep no query of its own until the host needs a plan.
    policy = inputs.policies.get(host.pk)
    if policy is None or policy.mode == BalancingPolicy.Mode.OFF or host.removed_at:
        return None
    if host.pk in inputs.applying:
        log.info("balancing of %s skipped: a plan is being applied", host.name)
        return None
    digest = inventory_digest(load_topology(host), inputs.demands[host.pk])
    below = inputs.below[host.pk]
    if _unchanged_since_last_run(inputs.last_plan.get(host.pk), policy, digest, below):
        log.info("balancing of %s skipped: nothing changed since its last plan", host.name)
        return None
    plan = BalancingPlan.objects.create(
        host=host,
        status=Status.COMPUTING,
        trigger=BalancingPlan.Trigger.LOCALITY if below else BalancingPlan.Trigger.SCHEDULER,
        requested_by_name=SCHEDULER_ACTOR,
        locality_below=below,
    )
    plan = compute_plan(plan.pk)
    if below:
        # Said first on the plan page: why the scheduler planned this host now.
        plan.notes = [_locality_note(below, policy.locality_threshold), *plan.notes]
        plan.save(update_fields=["notes"])
    # Plans left for approval that were computed from another inventory can no longer apply.
    for old in BalancingPlan.objects.filter(host=host, status=Status.READY).exclude(
        inventory_digest=plan.inventory_digest
    ):
        old.status = Status.STALE
        old.error = (
            f"stale: the inventory changed since this plan was computed (see plan {plan.pk})"
        )
        old.save(update_fields=["status", "error"])
    if plan.status != Status.READY:
        return plan
    why = _scheduler_refusal(plan, policy)
    if not why and policy.mode == BalancingPolicy.Mode.AUTOMATIC:
        why = _automatic_refusal(host)
    if why:
        plan.status = Status.NOT_NEEDED
        plan.error = why
        plan.notes = [*plan.notes, why]
        plan.save(update_fields=["status", "error", "notes"])
        return plan
    if policy.mode == BalancingPolicy.Mode.AUTOMATIC:
        try:
            approve_plan(plan=plan, actor=None, reason=_automatic_reason(plan))
        except ValidationError as exc:
            plan.refresh_from_db()
            why = "; ".join(exc.messages)
            log.warning("automatic balancing of %s refused: %s", host.name, why)
            if plan.status == Status.READY:
                plan.error = f"not applied automatically: {why}"
                plan.save(update_fields=["error"])
    return plan


def balance_hosts() -> int:
    """The beat entry ``balance-hosts``: :func:`balance_host` for every active host whose
    policy is not off; how many plans were made. One host's failure does not stop the others.

    What decides whether a host needs a plan is read for every host at once (the hosts with
    their policies, then :func:`sweep_inputs`): a fleet whose inventory did not change costs
    the same handful of queries for 2 hosts or 500; each host that needs a plan then costs
    the planning of that host (its plan's queries, not its VMs')."""
    made = 0
    hosts = list(
        Host.objects.active()
        .filter(balancing_policy__isnull=False)
        .exclude(balancing_policy__mode=BalancingPolicy.Mode.OFF)
        .order_by("name")
    )
    token = _SWEEP.set(sweep_inputs(hosts))
    try:
        for host in hosts:
            try:
                plan = balance_host(host)
            except Exception:
                log.exception("balancing of host %s failed", host.name)
                continue
            made += plan is not None
    finally:
        _SWEEP.reset(token)
    return made
