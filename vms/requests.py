"""Asking for work on hosts: register a host (then its connection test and first sync), "Sync
now", the periodic sync and sample sweeps.

A sync request marks the host "sync queued" and enqueues ``hosts.tasks.sync_host`` (defined in
:mod:`vms.tasks`; the name is older than the module) once the transaction commits; the worker
runs :func:`vms.sync.sync_host`.
"""

from __future__ import annotations

import enum
import logging
import uuid as uuid_module
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hosts import tasks as host_tasks
from hosts.models import Host
from hosts.services import add_host
from numaportal import roles, schedules, spread
from numaportal.queueing import central_queue, enqueue, queue_refusal
from numaportal.virt.errors import VirtError
from vms import tasks

__all__ = [
    "SyncRequest",
    "register_from_form",
    "register_host",
    "request_check",
    "request_sync",
    "sample_enabled_hosts",
    "sync_enabled_hosts",
]

log = logging.getLogger(__name__)


def register_host(
    *,
    name: str,
    uri: str,
    enabled: bool = True,
    worker_queue: str = "",
    queue_first_sync: bool = True,
) -> Host:
    """Validate and save the host ("checking the connection"), then queue its connection test
    and first sync when committed. Nothing here contacts the host: a request that registers
    one returns at once, whatever the host does.

    Errors: see :func:`hosts.services.validate_registration`. *queue_first_sync* False is for
    callers that sync in-process right away (``manage.py ensure_lab_host``): the host is saved
    as "never synced" and nothing is queued.
    """
    host = add_host(
        name=name,
        uri=uri,
        enabled=enabled,
        worker_queue=worker_queue,
        checking=queue_first_sync,
    )
    if queue_first_sync:
        request_check(host)
    return host


def register_from_form(data: Mapping[str, Any], *, actor: Any = None) -> Host:
    """:func:`register_host` with the cleaned data of :class:`hosts.forms.HostRegisterForm` (the
    page's and the API's), every refusal a ValidationError: the URI validator's words under
    "uri", as the form shows them next to that field. *actor* (a user; None: the portal
    itself) needs ``hosts.add_host`` (PermissionDenied otherwise)."""
    roles.require(actor, roles.ADD_HOST, "register hosts")
    try:
        return register_host(
            name=data["name"],
            uri=data["uri"],
            enabled=data["enabled"],
            worker_queue=data["worker_queue"],
        )
    except VirtError as exc:
        raise ValidationError({"uri": [str(exc)]}) from None
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


# --- queueing -------------------------------------------------------------------------------


def _enqueue_for_host(
    task: Any, host_id: int, task_id: str, failed: str, what: str, **options: Any
) -> None:
    """Queue *task* for the host; a broker that refuses it leaves the host in status *failed*
    with "could not queue the <what>" instead of "checking"/"queued" forever."""

    def refused(exc: Exception) -> None:
        Host.objects.filter(pk=host_id, sync_task_id=task_id).update(
            sync_status=failed,
            last_error=f"could not queue the {what}: {queue_refusal(exc)}",
            last_sync_at=timezone.now(),
        )

    enqueue(task, [host_id], task_id=task_id, refused=refused, **options)


def _time_limits(soft_s: float) -> dict[str, float]:
    """The task's time limits, sent with the message: the worker applies the publisher's
    (vms.tasks says why a task has its own)."""
    return {"soft_time_limit": soft_s, "time_limit": soft_s + settings.NUMAPORTAL_HARD_LIMIT_GRACE}


def _enqueue_check(host_id: int, task_id: str, **options: Any) -> None:
    failed = Host.SyncStatus.CHECK_FAILED
    options.update(_time_limits(settings.NUMAPORTAL_CHECK_TIME_LIMIT))
    _enqueue_for_host(tasks.check_host, host_id, task_id, failed, "connection test", **options)


class SyncRequest(enum.StrEnum):
    """What a sync request did (the caller's words to the user differ)."""

    #: A sync was queued.
    QUEUED = "queued"
    #: The host never passed its connection test: the test (then the first sync) was queued.
    CHECK_QUEUED = "check queued"
    #: A sync or connection test of the host was already queued or running: nothing new was
    #: queued, the pending one will do (the page follows it).
    PENDING = "pending"


def _stale_before(now: datetime) -> datetime:
    """A pending state planned (or started) before this was lost: its task would have been
    stopped by its hard time limit by now (the connection test's, the longest), plus a minute
    for a busy queue. A superseded task that turns up after all skips itself (vms.sync)."""
    limit = settings.NUMAPORTAL_CHECK_TIME_LIMIT + settings.NUMAPORTAL_HARD_LIMIT_GRACE + 60
    return now - timedelta(seconds=limit)


def _claim(host: Host, status: str, due: datetime) -> str | None:
    """Mark *host* pending (*status*, a new task id, *due*) unless a sync or connection test
    of it is pending already and not stale; the new task id, or None.

    One conditional UPDATE, not a read then a write: of two sweeps, or a sweep and a "Sync
    now", racing for the host, the database lets exactly one match the filter (PostgreSQL
    re-checks it on the row the first one committed; SQLite serialises the writes).
    """
    task_id = str(uuid_module.uuid4())
    free = (
        ~Q(sync_status__in=Host.SYNC_PENDING)
        | Q(sync_due_at__isnull=True)
        | Q(sync_due_at__lt=_stale_before(timezone.now()))
    )
    claimed = (
        Host.objects.filter(pk=host.pk)
        .filter(free)
        .update(sync_status=status, sync_task_id=task_id, sync_due_at=due)
    )
    if not claimed:
        return None
    host.sync_status, host.sync_task_id, host.sync_due_at = status, task_id, due
    return task_id


def request_check(host: Host) -> None:
    """Mark the host "checking the connection" and enqueue ``vms.tasks.check_host`` (the test,
    then the first sync) once committed; the task id is kept in ``sync_task_id``.

    Always queued, whatever is pending: a registration or a new URI must be tested (a test of
    the old URI that answers later no longer applies, :func:`hosts.services.record_check_answer`,
    and a sync queued before it skips itself as superseded).
    """
    task_id = str(uuid_module.uuid4())
    host.sync_status = Host.SyncStatus.CHECKING
    host.sync_task_id = task_id
    host.sync_due_at = timezone.now()
    host.save(update_fields=["sync_status", "sync_task_id", "sync_due_at"])
    host_id = host.pk
    transaction.on_commit(lambda: _enqueue_check(host_id, task_id))


def _enqueue_sync(host_id: int, task_id: str, **options: Any) -> None:
    options.update(_time_limits(settings.NUMAPORTAL_SYNC_TIME_LIMIT))
    _enqueue_for_host(tasks.sync_host, host_id, task_id, Host.SyncStatus.ERROR, "sync", **options)


def request_sync(host: Host, *, actor: Any = None) -> SyncRequest:
    """ "Sync now": mark the host "sync queued" and enqueue ``hosts.tasks.sync_host`` once
    committed, to start at once. *actor* (a user; None: the portal itself) needs
    ``hosts.change_host``.

    The task id is generated here and stored on the host (``sync_task_id``) so a page can
    follow it. A sync writes the database, so it runs on a central worker (an on-host worker
    has no database), reaching the host through its libvirt URI.

    One sync per host at a time: when a sync or connection test of the host is already queued
    or running (and not lost, see :func:`_stale_before`), nothing is queued and the answer is
    :attr:`SyncRequest.PENDING`; *host* is left as it was, so reload it to show the pending one.

    A host that never passed its connection test ("checking", "connection test failed") is
    tested again instead (:func:`request_check`): "Sync now" is its retry, and an in-process
    open of a host that may never answer is what the test exists to avoid.
    """
    roles.require(actor, roles.CHANGE_HOST, "sync hosts")
    return _request_sync(host, due=None)


def _request_sync(host: Host, *, due: datetime | None) -> SyncRequest:
    """Claim the host (:func:`_claim`) and queue its sync (or connection test) on commit, to
    start at *due* (None: at once)."""
    checking = host.sync_status in (Host.SyncStatus.CHECKING, Host.SyncStatus.CHECK_FAILED)
    status = Host.SyncStatus.CHECKING if checking else Host.SyncStatus.QUEUED
    task_id = _claim(host, status, due or timezone.now())
    if task_id is None:
        return SyncRequest.PENDING
    host_id = host.pk
    # An ETA only for a spread sweep: "Sync now" publishes exactly as before, to run at once.
    options = {} if due is None else {"eta": due}
    enqueue = _enqueue_check if checking else _enqueue_sync
    transaction.on_commit(lambda: enqueue(host_id, task_id, **options))
    return SyncRequest.CHECK_QUEUED if checking else SyncRequest.QUEUED


#: Not synced or sampled periodically: still booting (whoever marked it, make run's NUMA lab
#: start, syncs it once it is up), or its connection test has not passed (it is synced once it
#: does). "Sync now" works for each.
_NOT_PERIODIC = (
    Host.SyncStatus.STARTING,
    Host.SyncStatus.CHECKING,
    Host.SyncStatus.CHECK_FAILED,
)


def _periodic_hosts() -> Iterable[Host]:
    """Enabled, not removed, not still booting and not waiting for a passed connection test."""
    hosts = Host.objects.active().filter(enabled=True)
    return hosts.exclude(sync_status__in=_NOT_PERIODIC)


def _sweep_window(entry: str, every_s: float, cap_s: float, soft_limit_s: float) -> float:
    """Seconds over which a sweep spreads its hosts' tasks: the cap, ending the task's hard
    time limit (at most half the interval) before the next sweep of the entry's current
    interval, so the last host's task is over when the next sweep looks at it."""
    interval = schedules.interval_s(entry, every_s)
    hard = soft_limit_s + settings.NUMAPORTAL_HARD_LIMIT_GRACE
    return spread.window(interval, cap_s, min(hard, interval / 2))


def sync_enabled_hosts() -> int:
    """Queue a sync of every enabled host that has not been removed, is not starting and has
    passed its connection test; how many were queued.

    Each host's sync starts at its own stable offset after this sweep
    (:mod:`numaportal.spread`, within NUMAPORTAL_SYNC_SPREAD_S), not all in the same second.
    A host whose sync (or connection test) is still queued or running is skipped: it is not
    queued twice. Queueing never contacts a host, so one broken host cannot stop the others;
    each sync then records its own success or error.
    """
    window = _sweep_window(
        schedules.SYNC_ENTRY,
        schedules.SYNC_EVERY_S,
        settings.NUMAPORTAL_SYNC_SPREAD_S,
        settings.NUMAPORTAL_SYNC_TIME_LIMIT,
    )
    started = timezone.now()
    count = 0
    for host in _periodic_hosts():
        due = started + timedelta(seconds=spread.phase(host.pk, window))
        try:
            outcome = _request_sync(host, due=due)
        except Exception:
            log.exception("could not queue the sync of host %s", host.name)
            continue
        if outcome is SyncRequest.PENDING:
            log.info("sync of host %s still pending: not queued again", host.name)
            continue
        count += 1
    return count


def sample_enabled_hosts() -> int:
    """Queue one sample per enabled host, on its own worker when it has one; returns count.

    Like the sync, each host's sample starts at its own stable offset after the sweep (within
    NUMAPORTAL_SAMPLE_SPREAD_S), and expires one interval after that planned start: a sample
    that could not start within its interval is worthless (the next one is due), but it must
    not expire because of its own offset.
    """
    every = settings.NUMAPORTAL_SAMPLE_INTERVAL
    interval = max(1.0, schedules.interval_s(schedules.SAMPLE_ENTRY, every))
    window = _sweep_window(
        schedules.SAMPLE_ENTRY,
        every,
        settings.NUMAPORTAL_SAMPLE_SPREAD_S,
        settings.NUMAPORTAL_SAMPLE_TIME_LIMIT,
    )
    started = timezone.now()
    count = 0
    for host in _periodic_hosts():
        due = started + timedelta(seconds=spread.phase(host.pk, window))
        timing = {"eta": due, "expires": due + timedelta(seconds=interval)}
        if host.has_probe:
            # The on-host worker reads and answers; its answer is this link's first argument.
            store = tasks.store_sample.s(host.pk).set(queue=central_queue())
            host_tasks.probe_host.apply_async(
                args=[host.name, host.uri, host.worker_queue],
                queue=host.worker_queue,
                link=store,
                **timing,
            )
        else:
            tasks.sample_host_libvirt.apply_async(args=[host.pk], queue=central_queue(), **timing)
        count += 1
    return count
