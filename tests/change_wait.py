"""Waiting for a change's worker in tests: the record in the database is the result.

``changes.tasks.apply_change`` stores no Celery result (``ignore_result``: publishing a task
whose result is kept also subscribes to it in Redis, and that hung a change request for ~19 s
with Redis down), so tests watch the record, as the change page does.
"""

from __future__ import annotations

import time

from changes.models import Change

__all__ = ["wait_for_change"]


def wait_for_change(change: Change, timeout: float = 120.0, poll: float = 0.2) -> Change:
    """*change* once its worker has ended it (succeeded or failed), refreshed from the database;
    an AssertionError naming its status when it is still queued or running after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        change.refresh_from_db()
        if change.is_finished:
            return change
        if time.monotonic() > deadline:
            raise AssertionError(
                f"change {change.id} ({change.kind}) still {change.status} after {timeout:.0f} s"
            )
        time.sleep(poll)
