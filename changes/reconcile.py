"""Ending the changes a dead worker (or a lost task) left behind: :func:`reconcile_stale_changes`
(beat, every 120 s).

A change left ``running`` past the task's hard time limit, or ``queued`` for longer than
``NUMAPORTAL_CHANGE_QUEUED_TIMEOUT``, is read back from its host and ends ``failed`` with the
real state as its ``after``. A host setting (numa_balancing) is readable only by the host's own
worker, not by the beat worker running this: the record says so instead of pretending to read it
back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from changes.diff import failure_outcome, make_diff
from changes.executor import finish, refresh_vm
from changes.kinds.base import snapshot_dict, vm_domain
from changes.locks import LOCK_MARGIN_S, change_lock, drop_lock, lock_holder, target_word
from changes.models import Change
from numaportal.virt.errors import VirtError

__all__ = ["INTERRUPTED", "LOST", "reconcile_stale_changes"]

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted (worker lost); state read back from the host"
LOST = "never started (task lost); state read back from the host"

Status = Change.Status


def _host_setting_not_read(change: Change) -> str:
    return (
        f"not read back: {change.kind} is read only by the worker on {change.host.name} "
        "(its next numastat sample shows the value in force)"
    )


def _reconcile(change: Change, message: str) -> bool:
    """End a stale change ``failed`` with the host's real state; False if skipped this time."""
    lock = change_lock(change)
    token = str(change.pk)
    holder = lock_holder(change)
    if holder == token:
        # The lock of the dead worker that ran this very change: nobody else will release it.
        drop_lock(change)
    elif holder is not None:
        log.info(
            "change %s: %s busy with change %s, reconcile later",
            change.pk,
            target_word(change),
            holder,
        )
        return False
    if not lock.acquire(blocking=True, blocking_timeout=5, token=f"reconcile-{token}"):
        return False
    try:
        after: dict[str, Any] | None = None
        error = message
        if change.vm_id is None:
            error = f"{message.split(';')[0]}; {_host_setting_not_read(change)}"
        else:
            try:
                with vm_domain(change, readonly=True) as dom:
                    after = snapshot_dict(dom)
            except VirtError as exc:
                error = f"{message.split(';')[0]}; the host could not be read back: {exc}"
        before = Change.objects.filter(pk=change.pk).values_list("before", flat=True).first()
        done = finish(
            change,
            Status.FAILED,
            from_statuses=[change.status],
            error=error,
            outcome=failure_outcome("", before, after),
            after=after,
            diff=make_diff(before, after),
        )
    finally:
        with contextlib.suppress(redis.RedisError):
            lock.release()
    if done and change.vm_id is not None:
        refresh_vm(change)
    return done


def reconcile_stale_changes(
    older_than_s: float | None = None,
    queued_older_than_s: float | None = None,
    only: Collection[Any] | None = None,
) -> int:
    """End changes left ``running`` past the task's hard time limit (its worker was killed) and
    changes ``queued`` for longer than ``NUMAPORTAL_CHANGE_QUEUED_TIMEOUT`` (their task was
    lost): each is read back from its host and marked ``failed``. Returns how many were ended.

    *only*: these change ids and no others (a drill's, with thresholds of seconds, on a portal
    whose other changes are not the drill's to end).
    """
    if older_than_s is None:
        older_than_s = float(settings.CELERY_TASK_TIME_LIMIT) + LOCK_MARGIN_S
    if queued_older_than_s is None:
        queued_older_than_s = settings.NUMAPORTAL_CHANGE_QUEUED_TIMEOUT
    now = timezone.now()
    changes = Change.objects.select_related("host", "vm")
    if only is not None:
        changes = changes.filter(pk__in=list(only))
    stale = [
        (change, INTERRUPTED)
        for change in changes.filter(
            status=Status.RUNNING, started_at__lt=now - timedelta(seconds=older_than_s)
        )
    ] + [
        (change, LOST)
        for change in changes.filter(
            status=Status.QUEUED, created_at__lt=now - timedelta(seconds=queued_older_than_s)
        )
        # A balancing plan runs its changes one after another: a queued one whose group is
        # still progressing (another of its changes started recently) is waiting its turn.
        .exclude(
            Exists(
                Change.objects.filter(
                    group_id=OuterRef("group_id"),
                    started_at__gte=now - timedelta(seconds=queued_older_than_s),
                )
            )
        )
    ]
    ended = 0
    for change, message in stale:
        try:
            if _reconcile(change, message):
                ended += 1
                log.warning("change %s reconciled: %s", change.pk, message)
        except Exception:
            # One host that cannot be read must not keep the other stale changes running.
            log.exception("reconciling change %s failed", change.pk)
    return ended
