"""Celery tasks that sync and sample a host (its VMs included): thin wrappers over services.

The task names keep their first module, ``hosts.tasks``: beat rows in the database and queued
messages name them, and a sync is still "a host's" in the operator's words.
"""

import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from hosts.models import Host
from vms import locality_rollups, sampling, sync

log = logging.getLogger(__name__)

# Each task's own time limits (settings: derived from NUMAPORTAL_LIBVIRT_TIMEOUT), instead of
# the global 300 s: a host that stops answering holds a worker process that long at most. The
# soft limit raises SoftTimeLimitExceeded in the task, which records the timeout on the host;
# the hard limit, a little later, kills the worker's child process when libvirt holds the
# thread inside a C call (signals are handled between Python bytecodes): the host then stays
# "syncing" until the state is stale (vms.requests) and the next sweep queues it again. Both
# need the prefork pool (the default, and the Procfile's); a solo-pool worker enforces neither.
_GRACE = settings.NUMAPORTAL_HARD_LIMIT_GRACE
SYNC_LIMIT_S = settings.NUMAPORTAL_SYNC_TIME_LIMIT
CHECK_LIMIT_S = settings.NUMAPORTAL_CHECK_TIME_LIMIT
SAMPLE_LIMIT_S = settings.NUMAPORTAL_SAMPLE_TIME_LIMIT


def _soft_limit(request: object, default: float) -> float:
    """The soft limit this run had: the publisher puts its task's limits in the message
    (``timelimit``: hard, soft), and those, not this worker's settings, are the ones applied."""
    limits = getattr(request, "timelimit", None) or (None, None)
    return float(limits[1] or default)


def _outcome(host: Host) -> dict[str, str]:
    return {"host": host.name, "status": host.sync_status, "error": host.last_error}


def _missing(host_id: int) -> dict[str, str]:
    return {"host": str(host_id), "status": "missing", "error": "no such host"}


def _recorded(
    request: Any, host_id: int, run: Callable[[int, str], Host], what: str, limit_s: float
) -> dict[str, str]:
    """``run(host_id, task_id)`` (a sync, or a connection test then a sync) with its outcome
    recorded on the host and returned: a missing host is skipped, a soft time limit recorded
    as "<what> timed out after N s" (the limit this run had, from its message)."""
    try:
        host = run(host_id, request.id or "")
    except Host.DoesNotExist:
        log.warning("%s of host %s skipped: no such host", what, host_id)
        return _missing(host_id)
    except SoftTimeLimitExceeded:
        timed_out = sync.record_timeout(host_id, what, _soft_limit(request, limit_s))
        return _missing(host_id) if timed_out is None else _outcome(timed_out)
    return _outcome(host)


@shared_task(
    name="hosts.tasks.sync_host",
    bind=True,
    soft_time_limit=SYNC_LIMIT_S,
    time_limit=SYNC_LIMIT_S + _GRACE,
)
def sync_host(self, host_id: int) -> dict[str, str]:
    """Sync one host. A host's failure is recorded on the host (and returned), not raised:
    a broken host must not fill the worker log with tracebacks every five minutes."""
    return _recorded(self.request, host_id, sync.sync_host, "sync", SYNC_LIMIT_S)


@shared_task(
    name="vms.tasks.check_host",
    bind=True,
    soft_time_limit=CHECK_LIMIT_S,
    time_limit=CHECK_LIMIT_S + _GRACE,
)
def check_host(self, host_id: int) -> dict[str, str]:
    """A registration (or a changed URI): test the connection, then sync (:func:`vms.sync.
    check_and_sync`). Like a sync, the outcome is recorded on the host and returned."""
    return _recorded(
        self.request, host_id, sync.check_and_sync, "connection test and sync", CHECK_LIMIT_S
    )


@shared_task(name="vms.tasks.store_sample")
def store_sample(message: object, host_id: int) -> dict[str, object]:
    """Central: store what an on-host worker's ``hosts.tasks.probe_host`` handed back (its
    return value arrives first: this task is that one's link)."""
    try:
        return sampling.store_message(host_id, message).as_dict()
    except Host.DoesNotExist:
        return {"host": str(host_id), "error": "no such host"}


@shared_task(
    name="hosts.tasks.sample_host_libvirt",
    soft_time_limit=SAMPLE_LIMIT_S,
    time_limit=SAMPLE_LIMIT_S + _GRACE,
)
def sample_host_libvirt(host_id: int) -> dict[str, object]:
    """For hosts without an on-host worker: free memory per cell through libvirt only."""
    return _sample(host_id, probe=False)


def _sample(host_id: int, *, probe: bool) -> dict[str, object]:
    try:
        try:
            return sampling.sample_host(host_id, probe=probe).as_dict()
        except SoftTimeLimitExceeded:
            return sampling.record_timeout(host_id, SAMPLE_LIMIT_S).as_dict()
    except Host.DoesNotExist:
        return {"host": str(host_id), "error": "no such host"}


@shared_task(name="vms.tasks.rollup_locality")
def rollup_locality() -> dict[str, int]:
    """Periodic (beat entry "rollup-locality", 15 min): VM locality samples rolled up into
    buckets, then raw samples and rollups past the retention dropped (numastat's settings)."""
    return locality_rollups.rollup_and_prune().as_dict()
