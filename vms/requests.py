"""Asking for work on hosts: register a host (then its connection test and first sync), "Sync
now", the periodic sync and sample sweeps.

A sync request marks the host "sync queued" and enqueues ``hosts.tasks.sync_host`` (defined in
:mod:`vms.tasks`; the name is older than the module) once the transaction commits; the worker
runs :func:`vms.sync.sync_host`.
"""

from __future__ import annotations

import logging
import uuid as uuid_module
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from hosts import tasks as host_tasks
from hosts.models import Host
from hosts.services import add_host
from numaportal import roles
from numaportal.queueing import central_queue, enqueue, queue_refusal
from numaportal.virt.errors import VirtError
from vms import tasks

__all__ = [
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


def _enqueue_for_host(task: Any, host_id: int, task_id: str, failed: str, what: str) -> None:
    """Queue *task* for the host; a broker that refuses it leaves the host in status *failed*
    with "could not queue the <what>" instead of "checking"/"queued" forever."""

    def refused(exc: Exception) -> None:
        Host.objects.filter(pk=host_id, sync_task_id=task_id).update(
            sync_status=failed,
            last_error=f"could not queue the {what}: {queue_refusal(exc)}",
            last_sync_at=timezone.now(),
        )

    enqueue(task, [host_id], task_id=task_id, refused=refused)


def _enqueue_check(host_id: int, task_id: str) -> None:
    _enqueue_for_host(
        tasks.check_host, host_id, task_id, Host.SyncStatus.CHECK_FAILED, "connection test"
    )


def request_check(host: Host) -> None:
    """Mark the host "checking the connection" and enqueue ``vms.tasks.check_host`` (the test,
    then the first sync) once committed; the task id is kept in ``sync_task_id``."""
    task_id = str(uuid_module.uuid4())
    host.sync_status = Host.SyncStatus.CHECKING
    host.sync_task_id = task_id
    host.save(update_fields=["sync_status", "sync_task_id"])
    host_id = host.pk
    transaction.on_commit(lambda: _enqueue_check(host_id, task_id))


def _enqueue_sync(host_id: int, task_id: str) -> None:
    _enqueue_for_host(tasks.sync_host, host_id, task_id, Host.SyncStatus.ERROR, "sync")


def request_sync(host: Host, *, actor: Any = None) -> None:
    """Mark the host "sync queued" and enqueue ``hosts.tasks.sync_host`` once committed.
    *actor* (a user; None: the portal itself) needs ``hosts.change_host``.

    The task id is generated here and stored on the host (``sync_task_id``) so a page can
    follow it. A sync writes the database, so it runs on a central worker (an on-host worker
    has no database), reaching the host through its libvirt URI.

    A host that never passed its connection test ("checking", "connection test failed") is
    tested again instead (:func:`request_check`): "Sync now" is its retry, and an in-process
    open of a host that may never answer is what the test exists to avoid.
    """
    roles.require(actor, roles.CHANGE_HOST, "sync hosts")
    if host.sync_status in (Host.SyncStatus.CHECKING, Host.SyncStatus.CHECK_FAILED):
        request_check(host)
        return
    task_id = str(uuid_module.uuid4())
    host.sync_status = Host.SyncStatus.QUEUED
    host.sync_task_id = task_id
    host.save(update_fields=["sync_status", "sync_task_id"])
    host_id = host.pk
    transaction.on_commit(lambda: _enqueue_sync(host_id, task_id))


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


def sync_enabled_hosts() -> int:
    """Queue a sync of every enabled host that has not been removed, is not starting and has
    passed its connection test; how many were queued.

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
