"""Asking for work on hosts: register a host (then its first sync), "Sync now", the periodic
sync and sample sweeps.

A sync request marks the host "sync queued" and enqueues ``hosts.tasks.sync_host`` (defined in
:mod:`vms.tasks`; the name is older than the module) once the transaction commits; the worker
runs :func:`vms.sync.sync_host`.
"""

from __future__ import annotations

import logging
import uuid as uuid_module
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hosts import tasks as host_tasks
from hosts.models import Host
from hosts.services import add_host
from numaportal.queueing import central_queue, enqueue
from vms import tasks

__all__ = ["register_host", "request_sync", "sample_enabled_hosts", "sync_enabled_hosts"]

log = logging.getLogger(__name__)


def register_host(
    *,
    name: str,
    uri: str,
    enabled: bool = True,
    worker_queue: str = "",
    queue_first_sync: bool = True,
) -> Host:
    """Validate, try the connection once, save, and queue the first sync when committed.

    Errors: see :func:`hosts.services.check_registration`. *queue_first_sync* False is for
    callers that sync in-process right away (``manage.py ensure_lab_host``).
    """
    host = add_host(name=name, uri=uri, enabled=enabled, worker_queue=worker_queue)
    if queue_first_sync:
        request_sync(host)
    return host


# --- queueing -------------------------------------------------------------------------------


def _enqueue_sync(host_id: int, task_id: str) -> None:
    def refused(exc: Exception) -> None:  # say so on the host instead of "queued" forever
        Host.objects.filter(pk=host_id, sync_task_id=task_id).update(
            sync_status=Host.SyncStatus.ERROR,
            last_error=f"could not queue the sync: {exc}",
            last_sync_at=timezone.now(),
        )

    enqueue(tasks.sync_host, [host_id], task_id=task_id, refused=refused)


def request_sync(host: Host) -> None:
    """Mark the host "sync queued" and enqueue ``hosts.tasks.sync_host`` once committed.

    The task id is generated here and stored on the host (``sync_task_id``) so a page can
    follow it. A sync writes the database, so it runs on a central worker (an on-host worker
    has no database), reaching the host through its libvirt URI.
    """
    task_id = str(uuid_module.uuid4())
    host.sync_status = Host.SyncStatus.QUEUED
    host.sync_task_id = task_id
    host.save(update_fields=["sync_status", "sync_task_id"])
    host_id = host.pk
    transaction.on_commit(lambda: _enqueue_sync(host_id, task_id))


def _periodic_hosts() -> Iterable[Host]:
    """Enabled, not removed, and not still booting: a host marked "host starting" would only
    fail to connect; whoever marked it (make run's NUMA lab start) syncs it once it is up, and
    "Sync now" still works."""
    hosts = Host.objects.active().filter(enabled=True)
    return hosts.exclude(sync_status=Host.SyncStatus.STARTING)


def sync_enabled_hosts() -> int:
    """Queue a sync of every enabled host that has not been removed and is not starting; how
    many were queued.

    Queueing never contacts a host, so one broken host cannot stop the others; each sync then
    records its own success or error.
    """
    count = 0
    for host in _periodic_hosts():
        try:
            request_sync(host)
        except Exception:
            log.exception("could not queue the sync of host %s", host.name)
            continue
        count += 1
    return count


def sample_enabled_hosts() -> int:
    """Queue one sample per enabled host: on its own worker when it has one. Returns count."""
    expires = max(1.0, settings.NUMAPORTAL_SAMPLE_INTERVAL)
    count = 0
    for host in _periodic_hosts():
        if host.has_probe:
            # The on-host worker reads and answers; its answer is this link's first argument.
            store = tasks.store_sample.s(host.pk).set(queue=central_queue())
            host_tasks.probe_host.apply_async(
                args=[host.name, host.uri, host.worker_queue],
                queue=host.worker_queue,
                expires=expires,
                link=store,
            )
        else:
            tasks.sample_host_libvirt.apply_async(
                args=[host.pk], queue=central_queue(), expires=expires
            )
        count += 1
    return count
