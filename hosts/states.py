"""A host's state as the ops dashboard counts it: in sync, stale, sync failed, starting.

One meaning per word: the sync status (``Host.SyncStatus``) says what the last sync did;
the state says whether the inventory the portal shows can be trusted now. A host whose last
successful sync is older than ``NUMAPORTAL_HOST_STALE_AFTER`` seconds (three periodic syncs
by default) is stale even when a sync is queued or running, because what the pages show is
that old. Each state is a ``Q`` over ``Host``, so the dashboard counts all four in one query
and the host list filters by the same words (``/hosts/?state=stale``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Count, Q

from hosts.models import Host

__all__ = ["HostState", "state_counts", "state_q"]

_FAILED = (Host.SyncStatus.ERROR, Host.SyncStatus.CHECK_FAILED)
_STARTING = (Host.SyncStatus.STARTING, Host.SyncStatus.CHECKING, Host.SyncStatus.NEVER)


class HostState(models.TextChoices):
    IN_SYNC = "in_sync", "in sync"
    STALE = "stale", "stale"
    FAILED = "failed", "sync failed"
    STARTING = "starting", "starting"


def _fresh_since(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.NUMAPORTAL_HOST_STALE_AFTER)


def state_q(state: str, now: datetime) -> Q:
    """The hosts in *state* at *now* (the four states do not overlap and cover every host)."""
    failed = Q(sync_status__in=_FAILED)
    starting = Q(sync_status__in=_STARTING)
    fresh = Q(last_sync_ok_at__gte=_fresh_since(now))
    if state == HostState.FAILED:
        return failed
    if state == HostState.STARTING:
        return starting
    if state == HostState.IN_SYNC:
        return ~failed & ~starting & fresh
    if state == HostState.STALE:
        return ~failed & ~starting & ~fresh
    raise ValueError(f"unknown host state {state!r}")


def state_counts(hosts: models.QuerySet[Host], now: datetime) -> dict[str, int]:
    """How many of *hosts* are in each state (one query), keyed by :class:`HostState` value."""
    counts = hosts.aggregate(
        **{state.value: Count("pk", filter=state_q(state, now)) for state in HostState}
    )
    return {state.value: counts[state.value] for state in HostState}
