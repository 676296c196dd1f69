"""The per-target lock in Redis: two changes to one VM (or one host setting) never interleave.

A second change waits up to ``NUMAPORTAL_CHANGE_LOCK_WAIT`` seconds, then fails with "another
change to this VM is running: <id>". The lock's value is the holder's change id and it expires
after the task's hard time limit plus :data:`LOCK_MARGIN_S`, so a killed worker cannot hold it
forever; the reconciler drops the lock of the very change it ends.
"""

from __future__ import annotations

import os

import redis
from django.conf import settings

from changes.models import Change

__all__ = ["LOCK_MARGIN_S", "change_lock", "drop_lock", "lock_holder", "lock_key", "target_word"]

#: Seconds the lock outlives the task's hard time limit.
LOCK_MARGIN_S = 60

_redis_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    """One client per process (Celery's prefork children must not share a socket)."""
    pid = os.getpid()
    client = _redis_clients.get(pid)
    if client is None:
        client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
        _redis_clients.clear()
        _redis_clients[pid] = client
    return client


def lock_key(change: Change) -> str:
    vm_uuid = change.vm.uuid if change.vm is not None else "host"
    return f"numaportal:change-lock:{change.host_id}:{vm_uuid}"


def _lock_timeout() -> int:
    return int(settings.CELERY_TASK_TIME_LIMIT) + LOCK_MARGIN_S


def change_lock(change: Change) -> redis.lock.Lock:
    """The lock of the change's target (not taken yet); its token is meant to be the id."""
    return _redis().lock(lock_key(change), timeout=_lock_timeout(), thread_local=False)


def target_word(change: Change) -> str:
    """ "VM" or "host", for the messages about the lock."""
    return "VM" if change.vm_id is not None else "host"


def lock_holder(change: Change) -> str | None:
    """The id of the change holding the lock of *change*'s target; None when it is free."""
    value = _redis().get(lock_key(change))
    return value.decode() if isinstance(value, bytes) else value


def drop_lock(change: Change) -> None:
    """Delete the lock whoever holds it (a dead worker's, which nobody else will release)."""
    _redis().delete(lock_key(change))
