"""Balancing plans: request, compute, approve; the scheduler's policies; policy edits.

The one way to a balancing plan, for the pages and the scheduler alike:

- :func:`request_plan` (operators, ``changes.add_change``) writes the plan row (``computing``)
  and queues :func:`compute_plan` once committed, with the plan's id as the Celery task id;
- :func:`compute_plan` runs :func:`vms.placement.plan` on the host's *stored* inventory and
  records what it was based on (the last good sync and a digest of the inventory), the before
  and after placements, the scores and the notes: ``ready``, ``not_needed`` (nothing moves) or
  ``error`` (the planner's message);
- :func:`approve_plan` (operators, or None: the scheduler) refuses a plan that is not ready, a
  blank reason and a **stale** plan (the inventory differs from the one it was computed from),
  then hands it to :func:`balancing.apply.start_apply` (one ``plan_move`` change per moved VM);
- :func:`balance_hosts` (the beat entry ``balance-hosts``) does the same for every host whose
  :class:`~balancing.models.BalancingPolicy` is not off: it leaves a plan for approval
  (recommend) or approves it as the scheduler (automatic) when it improves the score enough
  with few enough moves, and otherwise records why not.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from balancing import apply
from balancing.inputs import demands_for_host, policy_for_host
from balancing.models import BalancingPlan, BalancingPolicy
from changes.models import Change
from changes.recording import SCHEDULER_ACTOR, reason_errors
from hosts.models import Host
from hosts.selectors import safe_cpuset
from hosts.services import load_topology
from numaportal.virt.cpuset import CpusetError, format_cpuset, parse_cpuset
from numaportal.virt.topology import HostTopology
from vms import placement

__all__ = [
    "NO_TOPOLOGY",
    "approve_plan",
    "balance_host",
    "balance_hosts",
    "can_edit_policy",
    "can_plan",
    "compute_plan",
    "inventory_digest",
    "policy_errors",
    "request_plan",
    "staleness",
    "update_policy",
]

log = logging.getLogger(__name__)

Status = BalancingPlan.Status
PLAN_PERMISSION = "changes.add_change"
NO_TOPOLOGY = "no topology: sync the host first"
NO_VMS = "no running VMs on this host: nothing to place"
NOTHING_MOVES = "the current placement is already the best the planner finds: nothing moves"
#: A second "Plan balancing" while a plan of the host is still computing returns that plan.
DUPLICATE_WINDOW = timedelta(minutes=5)


# --- who may do what --------------------------------------------------------------------------


def _active_user(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def can_plan(user: Any) -> bool:
    """Operators (``changes.add_change``) and superusers plan and approve."""
    return _active_user(user) and user.has_perm(PLAN_PERMISSION)


def can_edit_policy(user: Any) -> bool:
    """Admins only (superusers): a policy lets the scheduler move every VM of the host."""
    return _active_user(user) and user.is_superuser


def _require_operator(actor: Any) -> None:
    """*actor* None is the scheduler; a user needs the operator role."""
    if actor is None:
        return
    if not _active_user(actor):
        raise PermissionDenied("log in to plan balancing")
    if not actor.has_perm(PLAN_PERMISSION):
        raise PermissionDenied(
            f"{actor.get_username()} may not plan or approve balancing (operator role required)"
        )


# --- the inventory a plan is based on ---------------------------------------------------------


def inventory_digest(topology: HostTopology | None, demands: list[placement.VmDemand]) -> str:
    """sha256 of what a plan depends on: every VM as the planner sees it (its vCPUs, memory,
    pins, cells, locked / dedicated flags) and the host's cells, CPUs and memory."""
    shape = (
        ";".join(
            f"{cell.id}:{cell.memory_kib}:{format_cpuset(cell.cpu_ids) if cell.cpus else ''}"
            for cell in topology.cells
        )
        if topology is not None
        else "no topology"
    )
    text = f"{placement.demand_digest(demands)}\n{shape}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "never"


def staleness(plan: BalancingPlan) -> str:
    """Why *plan* no longer matches its host's stored inventory; "" while it still does.

    The inventory is compared whatever the sync times say: a VM locked by an operator after
    the plan was computed must not be moved by it either.
    """
    host = Host.objects.get(pk=plan.host_id)
    if host.removed_at is not None:
        return f"stale: host {host.name} was removed from the portal"
    topology = load_topology(host)
    current = inventory_digest(topology, demands_for_host(host))
    if current == plan.inventory_digest:
        return ""
    synced_since = host.last_sync_ok_at is not None and (
        plan.based_on_sync_at is None or host.last_sync_ok_at > plan.based_on_sync_at
    )
    if synced_since:
        return (
            "stale: the inventory changed since this plan was computed "
            f"(sync at {_when(host.last_sync_ok_at)}); plan again"
        )
    return "stale: the VMs changed since this plan was computed; plan again"


# --- request and compute ----------------------------------------------------------------------


def request_plan(
    host: Host, actor: Any, trigger: str = BalancingPlan.Trigger.MANUAL
) -> BalancingPlan:
    """Write a ``computing`` plan for *host* and queue :func:`compute_plan` once committed.

    *actor* None is the scheduler. Queued to the host's ``worker_queue`` when it has one (the
    default queue otherwise), with the plan's id as the task id. An operator who presses the
    button twice gets the plan that is still computing.
    """
    _require_operator(actor)
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
        plan_id, queue = str(plan.id), host.worker_queue
        transaction.on_commit(lambda: _enqueue_compute(plan_id, queue))
    log.info("balancing plan %s of %s requested by %s", plan.id, host.name, plan.requested_by_name)
    return plan


def _enqueue_compute(plan_id: str, queue: str) -> None:
    from balancing import tasks  # tasks imports this module

    options: dict[str, Any] = {"args": [plan_id], "task_id": plan_id}
    if queue:
        options["queue"] = queue
    try:
        tasks.compute_plan.apply_async(**options)
    except Exception as exc:  # broker down: the plan says so instead of "computing" forever
        log.exception("could not queue balancing plan %s", plan_id)
        BalancingPlan.objects.filter(pk=plan_id, status=Status.COMPUTING).update(
            status=Status.ERROR,
            computed_at=timezone.now(),
            error=f"could not queue the planning: {exc}",
        )


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
    plan.before = {d.name: placement.current_assignment(topology, d).as_dict() for d in demands}
    if not demands:
        plan.notes = [NO_VMS]
        return _finish(plan, Status.NOT_NEEDED)
    try:
        result = placement.plan(topology, demands, policy)
    except placement.PlanError as exc:
        return _finish(plan, Status.ERROR, str(exc))
    plan.after = {name: a.as_dict() for name, a in sorted(result.assignments.items())}
    plan.score_before = result.before.as_dict()
    plan.score_after = result.after.as_dict()
    plan.improvement_pct = round(result.improvement_pct, 2)
    plan.moves = len(result.moved)
    plan.notes = list(result.notes)
    problems = placement.validate(topology, demands, result)
    if problems:
        return _finish(
            plan, Status.ERROR, "the planner proposed an invalid placement: " + "; ".join(problems)
        )
    if not result.moved:
        plan.notes = [*plan.notes, NOTHING_MOVES]
        return _finish(plan, Status.NOT_NEEDED)
    try:
        # The order shown for review; start_apply computes it again when approved.
        plan.apply_order = placement.apply_order(topology, demands, result)
    except placement.PlanError as exc:
        return _finish(plan, Status.ERROR, f"no safe order to apply this plan: {exc}")
    return _finish(plan, Status.READY)


# --- approve ----------------------------------------------------------------------------------


def approve_plan(plan: BalancingPlan, actor: Any, reason: str) -> list[Change]:
    """Approve a ``ready`` plan and start applying it; its change records (one per moved VM).

    Refused with a :class:`ValidationError` (``reason`` for a blank reason, non-field for the
    rest): a plan that is not waiting for approval, and a stale plan — which is then marked
    ``stale``. *actor* None is the scheduler; a user needs the operator role
    (:class:`PermissionDenied`).
    """
    _require_operator(actor)
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
                changes = apply.start_apply(locked, actor, reason)
            except apply.PlanNotApplicable as exc:
                raise ValidationError({NON_FIELD_ERRORS: [str(exc)]}) from exc
    if stale:
        plan.refresh_from_db()
        raise ValidationError({NON_FIELD_ERRORS: [stale], **reason_errors(reason)})
    plan.refresh_from_db()
    return changes


# --- the scheduler ----------------------------------------------------------------------------


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


def _unchanged_since_last_run(host: Host, policy: BalancingPolicy, digest: str) -> bool:
    """The scheduler's last plan of *host* saw this inventory under this policy and did not
    lead to anything applied: computing it again would only write the same row."""
    last = (
        BalancingPlan.objects.filter(host=host, trigger=BalancingPlan.Trigger.SCHEDULER)
        .order_by("-created_at")
        .first()
    )
    return bool(
        last is not None
        and last.inventory_digest == digest
        and last.created_at >= policy.updated_at
        and last.status in (Status.READY, Status.NOT_NEEDED, Status.ERROR)
    )


def balance_host(host: Host) -> BalancingPlan | None:
    """One host under its policy: compute a plan now (trigger "scheduler"), then leave it for
    approval (recommend) or approve it as the scheduler (automatic) when it improves the score
    by at least the policy's threshold with at most its moves; otherwise the plan is
    ``not_needed`` and says why. None when the policy is off or there is nothing new to do."""
    policy = BalancingPolicy.objects.filter(host=host).first()
    if policy is None or policy.mode == BalancingPolicy.Mode.OFF or host.removed_at:
        return None
    if BalancingPlan.objects.filter(host=host, status=Status.APPLYING).exists():
        log.info("balancing of %s skipped: a plan is being applied", host.name)
        return None
    digest = inventory_digest(load_topology(host), demands_for_host(host))
    if _unchanged_since_last_run(host, policy, digest):
        log.info("balancing of %s skipped: nothing changed since its last plan", host.name)
        return None
    plan = BalancingPlan.objects.create(
        host=host,
        status=Status.COMPUTING,
        trigger=BalancingPlan.Trigger.SCHEDULER,
        requested_by_name=SCHEDULER_ACTOR,
    )
    plan = compute_plan(plan.pk)
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
    policy is not off; how many plans were made. One host's failure does not stop the others."""
    made = 0
    hosts = (
        Host.objects.active()
        .filter(balancing_policy__isnull=False)
        .exclude(balancing_policy__mode=BalancingPolicy.Mode.OFF)
    )
    for host in hosts.order_by("name"):
        try:
            plan = balance_host(host)
        except Exception:
            log.exception("balancing of host %s failed", host.name)
            continue
        made += plan is not None
    return made


# --- policies ---------------------------------------------------------------------------------

POLICY_FIELDS = (
    "mode",
    "min_improvement_pct",
    "max_moves",
    "strategy",
    "cpu_overcommit",
    "emulator",
    "housekeeping",
    "reserved",
    "whole_cores",
    "memory_reserve_mib",
)


def _cpuset_field(
    text: str, field: str, topology: HostTopology | None, errors: dict[str, list[str]]
) -> frozenset[int]:
    if not text.strip():
        return frozenset()
    try:
        cpus = parse_cpuset(text)
    except CpusetError as exc:
        errors.setdefault(field, []).append(str(exc))
        return frozenset()
    if topology is None:
        errors.setdefault(field, []).append(f"{NO_TOPOLOGY} (its CPUs are not known yet)")
        return cpus
    missing = cpus - topology.cpu_ids
    if missing:
        errors.setdefault(field, []).append(
            f"CPU(s) {format_cpuset(missing)} do not exist on this host "
            f"(it has {format_cpuset(topology.cpu_ids)})"
        )
    return cpus


def policy_errors(host: Host, values: dict[str, Any]) -> dict[str, list[str]]:
    """Every way *values* (the policy form's cleaned data) do not fit *host*, by field."""
    errors: dict[str, list[str]] = {}
    topology = load_topology(host)
    housekeeping = _cpuset_field(values.get("housekeeping") or "", "housekeeping", topology, errors)
    reserved = _cpuset_field(values.get("reserved") or "", "reserved", topology, errors)
    if values.get("mode") not in BalancingPolicy.Mode.values:
        errors.setdefault("mode", []).append("choose off, recommend or automatic")
    if values.get("strategy") not in BalancingPolicy.Strategy.values:
        errors.setdefault("strategy", []).append("choose spread or pack")
    if values.get("emulator") not in BalancingPolicy.Emulator.values:
        errors.setdefault("emulator", []).append("choose cell or housekeeping")
    overcommit = values.get("cpu_overcommit")
    if overcommit is None or not 1.0 <= float(overcommit) <= 16.0:
        errors.setdefault("cpu_overcommit", []).append(
            "at least 1 (no over-commit) and at most 16 vCPUs per physical CPU"
        )
    improvement = values.get("min_improvement_pct")
    if improvement is None or not 0.0 <= float(improvement) <= 100.0:
        errors.setdefault("min_improvement_pct", []).append("a percentage from 0 to 100")
    moves = values.get("max_moves")
    if moves is None or int(moves) < 1:
        errors.setdefault("max_moves", []).append("at least 1 VM per plan")
    if values.get("emulator") == BalancingPolicy.Emulator.HOUSEKEEPING and not housekeeping:
        errors.setdefault("housekeeping", []).append(
            "emulator threads on housekeeping CPUs need a housekeeping cpuset"
        )
    both = housekeeping & reserved
    if both:
        errors.setdefault("reserved", []).append(
            f"CPU(s) {format_cpuset(both)} are also housekeeping CPUs: reserved CPUs are never "
            "given to VMs, emulator threads included"
        )
    if topology is not None and not errors.get("housekeeping") and not errors.get("reserved"):
        taken = reserved | (
            housekeeping
            if values.get("emulator") == BalancingPolicy.Emulator.HOUSEKEEPING
            else frozenset()
        )
        if topology.cpu_ids and not topology.cpu_ids - taken:
            errors.setdefault("reserved", []).append("no CPU would be left for the VMs")
    reserve = values.get("memory_reserve_mib")
    if reserve is None or int(reserve) < 0:
        errors.setdefault("memory_reserve_mib", []).append("0 or more MiB")
    elif topology is not None:
        largest = max((cell.memory_kib for cell in topology.cells if cell.cpus), default=0)
        if largest and int(reserve) * 1024 >= largest:
            errors.setdefault("memory_reserve_mib", []).append(
                f"{reserve} MiB would leave no memory for VMs on any cell (the largest cell "
                f"with CPUs has {largest // 1024} MiB)"
            )
    return errors


def update_policy(*, host: Host, actor: Any, values: dict[str, Any]) -> BalancingPolicy:
    """Create or change *host*'s balancing policy (superusers only); raises
    :class:`ValidationError` keyed by field when *values* do not fit the host."""
    if not can_edit_policy(actor):
        raise PermissionDenied("balancing policies are for admins (superuser) only")
    errors = policy_errors(host, values)
    if errors:
        raise ValidationError(errors)
    fields = {name: values[name] for name in POLICY_FIELDS if name in values}
    for name in ("housekeeping", "reserved"):
        if name in fields:
            cpus = safe_cpuset(fields[name])
            fields[name] = format_cpuset(cpus) if cpus else ""
    policy, _ = BalancingPolicy.objects.update_or_create(host=host, defaults=fields)
    log.info("balancing policy of %s set by %s: %s", host.name, actor.get_username(), fields)
    return policy
