"""Enqueue a Celery task, or say on the record why it never reached a worker.

Every "request" service (a change, a sync, a plan to compute or to apply) writes its record
first and enqueues once the transaction commits. When the broker refuses, the record must not
stay "queued" forever: the caller's *refused* callback ends it with the broker's words.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis
from django.conf import settings
from kombu.exceptions import OperationalError as KombuOperationalError

__all__ = ["QUEUE_DOWN", "central_queue", "enqueue", "queue_refusal"]

log = logging.getLogger(__name__)

#: What a request that could not be queued says (the broker is down or not answering).
QUEUE_DOWN = "the task queue (Redis) is not answering: nothing was queued"


def queue_refusal(exc: Exception) -> str:
    """The broker's refusal in words: a connection failure says that Redis is not answering."""
    if isinstance(exc, (OSError, KombuOperationalError, redis.RedisError)):
        return f"{QUEUE_DOWN} ({exc})"
    return str(exc)


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
    # The record is the result, and nobody reads the task's. A kept result also makes the
    # publish subscribe to it in the result backend (Redis): with Redis stopped, that retried
    # for ~19 s before failing, and "Sync now" hung that long.
    options.setdefault("ignore_result", True)
    try:
        task.apply_async(args=list(args), **options)
    except Exception as exc:  # broker down or unreachable: the record says so
        log.exception("could not queue %s%s", task.name, f" {task_id}" if task_id else "")
        refused(exc)
        return False
    return True
