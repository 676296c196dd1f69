"""Enqueue a Celery task, or say on the record why it never reached a worker.

Every "request" service (a change, a sync, a plan to compute or to apply) writes its record
first and enqueues once the transaction commits. When the broker refuses, the record must not
stay "queued" forever: the caller's *refused* callback ends it with the broker's words.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["enqueue"]

log = logging.getLogger(__name__)


def enqueue(
    task: Any,
    args: Sequence[Any],
    *,
    queue: str = "",
    task_id: str | None = None,
    refused: Callable[[Exception], None],
    **options: Any,
) -> bool:
    """``task.apply_async(args, task_id=…, queue=…)``; False (after *refused*) if the broker
    refused. An empty *queue* means Celery's default queue (the central workers)."""
    if task_id is not None:
        options["task_id"] = task_id
    if queue:
        options["queue"] = queue
    try:
        task.apply_async(args=list(args), **options)
    except Exception as exc:  # broker down or unreachable: the record says so
        log.exception("could not queue %s%s", task.name, f" {task_id}" if task_id else "")
        refused(exc)
        return False
    return True
