"""The worker side of a change: :func:`apply_change`, what ``changes.tasks.apply_change`` runs
for a record written by :mod:`changes.requests` (or :mod:`balancing.apply`).

1. the target's lock (:mod:`changes.locks`; a second change waits, then fails);
2. ``queued`` -> ``running`` (``started_at``);
3. inside the kind's session (a libvirt domain; for a host setting the probe root, only on the
   host's own worker), the state before (``kind.snapshot``), stored at once so an interrupted
   change still shows where it started from;
4. ``kind.apply`` (through :mod:`numaportal.virt`, which verifies each call by reading back);
5. the state after, kept where the kind keeps it, and ``kind.verify`` of it against the request;
6. ``succeeded`` or ``failed`` with libvirt's (or the probe's) message unchanged, what really
   happened (``kind.outcome``), the readable ``kind.diff``; then the VM row is refreshed by a
   host sync.

Every path ends the record ``succeeded`` or ``failed``; a worker killed in between leaves it
``running``, and :mod:`changes.reconcile` ends it later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone

from changes.kinds import registry
from changes.kinds.base import ChangeKind, Snap
from changes.locks import change_lock, lock_holder, target_word
from changes.models import Change
from numaportal.virt.errors import VirtError
from vms import sync

__all__ = ["apply_change", "finish", "refresh_vm"]

log = logging.getLogger(__name__)

Status = Change.Status


def finish(
    change: Change,
    status: str,
    *,
    from_statuses: Iterable[str],
    error: str = "",
    outcome: str = "",
    after: dict[str, Any] | None = None,
    diff: str = "",
) -> bool:
    """One conditional update to a final status; False if the record had moved on meanwhile."""
    fields: dict[str, Any] = {
        "status": status,
        "finished_at": timezone.now(),
        "error": error,
        "outcome": outcome,
        "diff": diff,
    }
    if after is not None:
        fields["after"] = after
    done = Change.objects.filter(pk=change.pk, status__in=list(from_statuses)).update(**fields)
    return bool(done)


def refresh_vm(change: Change) -> None:
    """Refresh the VM row from the change's "after" snapshot (:func:`vms.sync.refresh_vm`: no
    libvirt call, the VM's rows only), so the next change does not wait for a host sync.

    Best effort: the change's own record is already final, and the periodic sync follows. A
    change whose state after could not be read has nothing to refresh from.
    """
    try:
        sync.refresh_vm(change.vm_id, change.after or {})
    except Exception:
        log.exception("refreshing VM %s after change %s failed", change.vm_id, change.pk)


def _not_started(change: Change, error: str, outcome: str) -> Change:
    """End a change that never got its lock ``failed``; the record as it is now."""
    finish(change, Status.FAILED, from_statuses=[Status.QUEUED], error=error, outcome=outcome)
    change.refresh_from_db()
    return change


def apply_change(change_id: str) -> Change:
    """Apply one queued change (the worker path); the final record. See the module docstring."""
    change = Change.objects.select_related("host", "vm").get(pk=change_id)
    if change.is_finished:
        log.info("change %s already %s: not applied again", change.pk, change.status)
        return change
    if change.status == Status.RUNNING:
        # A second delivery (acks_late after a worker died, or a duplicate): never apply twice.
        # If its worker is gone, reconcile_stale_changes ends it after the time limit.
        log.warning("change %s is already running: not applied again", change.pk)
        return change

    lock = change_lock(change)
    token = str(change.pk)
    try:
        acquired = lock.acquire(
            blocking=True, blocking_timeout=settings.NUMAPORTAL_CHANGE_LOCK_WAIT, token=token
        )
    except redis.RedisError as exc:
        return _not_started(
            change, f"could not take the {target_word(change)}'s lock: {exc}", "nothing was changed"
        )
    if not acquired:
        holder = lock_holder(change) or "unknown"
        return _not_started(
            change,
            f"another change to this {target_word(change)} is running: {holder}",
            f"nothing was changed: waited {settings.NUMAPORTAL_CHANGE_LOCK_WAIT:g} s "
            "for the other change to end",
        )

    try:
        started = Change.objects.filter(pk=change.pk, status=Status.QUEUED).update(
            status=Status.RUNNING, started_at=timezone.now()
        )
        if not started:  # cancelled (or reconciled) while it waited
            change.refresh_from_db()
            return change
        kind = registry.find(change.kind)
        if kind is None:  # a record of a kind this code no longer has: touch nothing
            finish(
                change,
                Status.FAILED,
                from_statuses=[Status.RUNNING],
                error=f"unknown kind of change {change.kind!r}",
                outcome="nothing was changed on the host",
            )
        else:
            _run(change, kind)
    finally:
        try:
            lock.release()
        except redis.RedisError as exc:  # expired (hard time limit passed) or Redis gone
            log.warning("releasing the lock of change %s: %s", change.pk, exc)
    change.refresh_from_db()
    if change.vm_id is not None:
        refresh_vm(change)
    return change


def _run(change: Change, kind: ChangeKind) -> None:
    """Session, snapshot, apply, snapshot, verify, record. Ends the record in every case."""
    before: Snap = None
    after: Snap = None
    error, outcome = "", ""
    try:
        with kind.session(change) as handle:
            before = kind.snapshot(handle)
            Change.objects.filter(pk=change.pk).update(before=before)
            try:
                error, outcome = kind.apply(handle, change, before)
            except VirtError as exc:  # refused before it did anything the kind could say
                error, outcome = str(exc), ""
            try:
                after = kind.snapshot(handle)
            except VirtError as exc:
                error = error or kind.unreadable_after(exc)
            if after is not None:
                kind.keep(change, after)
            if not error and after is not None:
                problems = kind.verify(change, after)
                if problems:
                    error = "read back after the change: " + "; ".join(problems)
    except VirtError as exc:  # no session (unreachable, no such domain, not on the host)
        error = str(exc)
    except BaseException as exc:
        # A bug, the database, or the soft time limit: the record must not stay running.
        finish(
            change,
            Status.FAILED,
            from_statuses=[Status.RUNNING],
            error=f"internal error: {exc!r}",
            outcome=kind.outcome(change, "internal error", "", before, after),
            after=after,
            diff=kind.diff(before, after),
        )
        raise
    status = Status.FAILED if error else Status.SUCCEEDED
    finish(
        change,
        status,
        from_statuses=[Status.RUNNING],
        error=error,
        outcome=kind.outcome(change, error, outcome, before, after),
        after=after,
        diff=kind.diff(before, after),
    )
    log.info("change %s %s%s", change.pk, status, f": {error}" if error else "")
