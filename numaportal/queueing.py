"""Enqueue a Celery task, or say on the record why it never reached a worker.

Every "request" service (a change, a sync, a plan to compute or to apply) writes its record
first and enqueues once the transaction commits. When the broker refuses, the record must not
stay "queued" forever: the caller's *refused* callback ends it with the broker's words.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings

__all__ = ["central_queue", "enqueue"]

log = logging.getLogger(__name__)


def central_queue() -> str:
    """The queue of the central workers (NUMAPORTAL_CENTRAL_QUEUE): they hold the database, so
    every sync, change and plan, and every answer of an on-host worker, is run there."""
    return settings.NUMAPORTAL_CENTRAL_QUEUE


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
    refused. An empty *queue* means the central workers' queue (:func:`central_queue`)."""
    if task_id is not None:
        options["task_id"] = task_id
    options["queue"] = queue or central_queue()
    try:
        task.apply_async(args=list(args), **options)
    except Exception as exc:  # broker down or unreachable: the record says so
        log.exception("could not queue %s%s", task.name, f" {task_id}" if task_id else "")
        refused(exc)
        return False
    return True
