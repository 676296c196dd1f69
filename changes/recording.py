"""The half of every ``request_*`` service that is the same for all targets: write the record,
enqueue its worker.

:func:`changes.requests.request_change` (VM changes),
:func:`changes.requests.request_numa_balancing` (host settings) and :mod:`balancing.apply` (a plan's
moves) validate their own way, then call
:func:`record_change`: the :class:`~changes.models.Change` row is written (status ``queued``)
and ``changes.tasks.apply_change`` is enqueued once the transaction commits, with the row's id
as the Celery task id, to the central workers (they hold the database; a host setting is read
and written by its on-host worker when the central one asks, see :mod:`hosts.onhost`).
"""

from __future__ import annotations

import logging
import uuid as uuid_module
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from changes import tasks
from changes.kinds import registry
from changes.kinds.base import PortalKind
from changes.models import Change
from numaportal import queueing
from numaportal.queueing import QUEUE_DOWN, queue_refusal

__all__ = [
    "QUEUE_DOWN",
    "SCHEDULER_ACTOR",
    "enqueue",
    "queue_refusal",
    "reason_errors",
    "record_change",
    "record_portal_change",
]

log = logging.getLogger(__name__)


def actor_name(actor: Any) -> str:
    """The name a record keeps of who asked: the user's, or the scheduler's for None."""
    return actor.get_username() if actor is not None else SCHEDULER_ACTOR


#: ``actor_name`` of changes made by the portal itself (balancing, scheduled plans).
SCHEDULER_ACTOR = "scheduler"
REASON_REQUIRED = "say why: a reason is required for the audit trail"


def reason_errors(reason: Any) -> dict[str, list[str]]:
    """``{"reason": [...]}`` when *reason* is blank or not text; ``{}`` otherwise."""
    if not isinstance(reason, str) or not reason.strip():
        return {"reason": [REASON_REQUIRED]}
    return {}


def enqueue(change_id: str) -> None:
    """Queue ``apply_change(change_id)`` with the change id as task id; a broker that refuses
    ends the record ``failed`` instead of leaving it ``queued`` forever."""

    def refused(exc: Exception) -> None:
        Change.objects.filter(pk=change_id, status=Change.Status.QUEUED).update(
            status=Change.Status.FAILED,
            finished_at=timezone.now(),
            error=f"could not queue the change: {queue_refusal(exc)}",
            outcome="nothing was changed: the task never reached a worker",
        )

    queueing.enqueue(tasks.apply_change, [change_id], task_id=change_id, refused=refused)


def record_change(
    *,
    actor: Any,
    host: Any,
    vm: Any,
    target_name: str,
    kind: str,
    params: dict[str, Any],
    scope: str,
    reason: str,
    group_id: uuid_module.UUID | str | None = None,
    enqueue_on_commit: bool = True,
) -> Change:
    """Write the ``queued`` record and enqueue its worker on commit; the record.

    The caller has checked the actor and validated everything: this only records. *actor*
    None is the scheduler. ``enqueue_on_commit=False`` leaves the record queued for a caller
    that runs it itself (a balancing plan applies its changes one after another).
    """
    with transaction.atomic():
        change = Change.objects.create(
            group_id=uuid_module.UUID(str(group_id)) if group_id else uuid_module.uuid4(),
            actor=actor,
            actor_name=actor_name(actor),
            host=host,
            vm=vm,
            target_name=target_name,
            kind=kind,
            params=params,
            scope=scope,
            reason=reason.strip(),
        )
        change_id = str(change.id)
        if enqueue_on_commit:
            transaction.on_commit(lambda: enqueue(change_id))
    log.info(
        "change %s queued: %s %s on %s by %s",
        change.id,
        kind,
        params,
        target_name,
        change.actor_name,
    )
    return change


def record_portal_change(
    *,
    actor: Any,
    kind: str,
    host: Any,
    vm: Any = None,
    target_name: str,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str,
) -> Change | None:
    """Record a portal setting saved by the caller (a :class:`~changes.kinds.base.PortalKind`):
    written finished (``succeeded``, scope ``portal``), *before* and *after* as given (JSON
    values), params the fields that changed, the diff in words; None when nothing changed.

    Call it inside the transaction that saves the setting, after checking the actor's role: a
    blank *reason* raises :class:`ValidationError` (``{"reason": [...]}``) before anything is
    written, so the caller's transaction saves neither.
    """
    portal_kind = registry.get(kind)
    if not isinstance(portal_kind, PortalKind):
        raise ValueError(f"{kind} is applied by a worker: record it with record_change")
    errors = reason_errors(reason)
    if errors:
        raise ValidationError(errors)
    changed = {key: value for key, value in after.items() if before.get(key) != value}
    if not changed:
        return None
    now = timezone.now()
    change = Change.objects.create(
        actor=actor,
        actor_name=actor_name(actor),
        host=host,
        vm=vm,
        target_name=target_name,
        kind=kind,
        params=changed,
        scope=Change.Scope.PORTAL,
        reason=reason.strip(),
        status=Change.Status.SUCCEEDED,
        started_at=now,
        finished_at=now,
        before=before,
        after=after,
        diff=portal_kind.diff(before, after),
        outcome=portal_kind.outcome(None, "", "", before, after),  # type: ignore[arg-type]
    )
    log.info(
        "change %s recorded: %s %s on %s by %s",
        change.id,
        kind,
        changed,
        target_name,
        change.actor_name,
    )
    return change
