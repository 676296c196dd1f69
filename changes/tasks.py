"""Celery tasks for changes: thin wrappers over :mod:`changes.executor`,
:mod:`changes.reconcile` and :mod:`changes.drift`. The task names are fixed: beat rows and
queued messages name them.

``apply_change``'s task id is the change's id (set by :func:`changes.recording.record_change`).
"""

from __future__ import annotations

from celery import shared_task

from changes import drift, executor, reconcile
from changes.models import Change


# ignore_result: the record in the database is the result. Without it, publishing also
# subscribes to the result in Redis, and with Redis down that retries for about 20 s before
# "Retry limit exceeded ... must be restarted"; the request must fail at once instead.
@shared_task(name="changes.tasks.apply_change", ignore_result=True)
def apply_change(change_id: str) -> dict[str, str]:
    try:
        change = executor.apply_change(change_id)
    except Change.DoesNotExist:
        # A message whose record is not in this database (another portal's Redis, a restored
        # backup): nothing to apply, and not worth a traceback.
        return {"change": str(change_id), "status": "missing", "error": "no such change"}
    return {"change": str(change.id), "status": change.status, "error": change.error}


@shared_task(name="changes.tasks.reconcile_stale_changes")
def reconcile_stale_changes() -> int:
    """Periodic: changes left running by a dead worker (or queued with a lost task) end failed."""
    return reconcile.reconcile_stale_changes()


@shared_task(name="changes.tasks.check_drift")
def check_drift() -> int:
    """Periodic: flag VMs whose tuning drifted (live vs config, or since the last change)."""
    return drift.check_drift()
