"""Syncing a host: read it over libvirt, store the host half and the VM half in one transaction.

This lives in ``vms`` (not ``hosts``) because a sync writes VM rows: ``hosts`` is the layer
below and never imports ``vms``. A sync reads the host with
:func:`numaportal.virt.inventory.read_inventory` (cost per host and per domain: see that
module) and writes everything in one transaction with a constant number of queries, whatever
the number of VMs (:func:`apply_inventory`). After a change, :func:`refresh_vm` writes that one
VM from the change's "after" snapshot: no libvirt call, a constant number of queries. Asking
for a sync (queueing it) is :mod:`vms.requests`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hosts import services as host_services
from hosts.models import Host
from hosts.services import SYNC_ERRORS, load_topology, record_sync_error, store_host_facts
from numaportal.virt import connection as virt_connection
from numaportal.virt.inventory import HostInventory, domain_from_snapshot, read_inventory
from vms.inventory import store_domain, store_domains
from vms.models import VirtualMachine

__all__ = ["apply_inventory", "check_and_sync", "record_timeout", "refresh_vm", "sync_host"]

log = logging.getLogger(__name__)


# --- sync -----------------------------------------------------------------------------------


def check_and_sync(host_id: int, task_id: str = "") -> Host:
    """A registration's worker half: test the connection, then sync if the host answered.

    The test runs in a child process killed after NUMAPORTAL_LIBVIRT_TIMEOUT
    (:func:`hosts.services.run_connection_test`), so a host that accepts TCP and never answers
    leaves no thread and no socket in this worker. Its refusal (libvirt's words) is recorded
    as "connection test failed" and the host is not synced (nor by the periodic sync) until a
    retry passes; its answer is kept on the host and the first sync follows at once.
    """
    host = Host.objects.get(pk=host_id)
    if host.is_removed:
        log.info("not testing removed host %s", host.name)
        return host
    try:
        answer = host_services.run_connection_test(host.uri)
    except SYNC_ERRORS as exc:
        log.warning("connection test of host %s failed: %s", host.name, exc)
        host_services.record_check_failure(host, host.uri, str(exc))
        return host
    if not host_services.record_check_answer(host, host.uri, answer):
        # Forgotten, or given another URI (whose own test is queued) while this one ran.
        log.info("connection test of host %s no longer applies", host.name)
        return host
    return sync_host(host_id, task_id)


def sync_host(host_id: int, task_id: str = "") -> Host:
    """Read the host over libvirt and store its inventory; record success or libvirt's error.

    Errors of the host (unreachable, refused, unparseable capabilities or domain XML) are
    recorded on it (status "error", ``last_error`` = libvirt's message) and not raised: the
    previously stored inventory stays as it was. Anything else (a bug, the database) is
    recorded too and then raised.

    *task_id* (a queued task's id): when another sync or connection test of the host is
    pending under another id (a later request replaced this one after it was given up as
    lost), this one does nothing and returns the host as it is: one sync per host at a time.
    """
    host = Host.objects.get(pk=host_id)
    if host.is_removed:
        log.info("not syncing removed host %s", host.name)
        return host
    if not _start(host, task_id):
        log.info("sync %s of host %s superseded by %s", task_id, host.name, host.sync_task_id)
        return host
    try:
        with virt_connection.connect(
            host.uri, timeout=settings.NUMAPORTAL_LIBVIRT_TIMEOUT, readonly=True
        ) as conn:
            inventory = read_inventory(conn)
        apply_inventory(host, inventory)
    except SYNC_ERRORS as exc:
        log.warning("sync of host %s failed: %s", host.name, exc)
        record_sync_error(host, str(exc))
        return host
    except SoftTimeLimitExceeded:
        raise  # not an internal error: the task records the timeout (vms.tasks)
    except Exception as exc:
        record_sync_error(host, f"internal error: {exc}")
        raise
    log.info("synced host %s: %d domains", host.name, len(inventory.domains))
    return host


def _start(host: Host, task_id: str) -> bool:
    """Mark the host "syncing" since now; False when another task's sync or connection test
    is pending (one conditional UPDATE, so two tasks cannot both start)."""
    now = timezone.now()
    rows = Host.objects.filter(pk=host.pk)
    if task_id:
        rows = rows.filter(Q(sync_task_id=task_id) | ~Q(sync_status__in=Host.SYNC_PENDING))
    if not rows.update(sync_status=Host.SyncStatus.RUNNING, sync_due_at=now):
        host.refresh_from_db()
        return False
    host.sync_status, host.sync_due_at = Host.SyncStatus.RUNNING, now
    return True


def record_timeout(host_id: int, what: str, limit_s: float) -> Host | None:
    """The task's soft time limit stopped it: status "sync failed", "<what> timed out after
    N s", so the host is no longer "syncing" (and a new sync may be queued). None when the
    host is gone."""
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return None
    message = f"{what} timed out after {limit_s:g} s"
    log.warning("%s of host %s", message, host.name)
    if host.sync_status == Host.SyncStatus.CHECKING:  # stopped before the test answered
        host_services.record_check_failure(host, host.uri, message)
    else:
        record_sync_error(host, message)
    return host


def apply_inventory(host: Host, inventory: HostInventory) -> Host:
    """Store *inventory* as *host*'s state in one transaction, with a constant number of queries:
    the host's facts, cells and CPUs (:func:`hosts.services.store_host_facts`), then its VMs and
    their vCPU rows (:func:`vms.inventory.store_domains`)."""
    now = timezone.now()
    with transaction.atomic():
        # Serialise concurrent syncs of one host (a "Sync now" racing the periodic one).
        Host.objects.select_for_update().filter(pk=host.pk).values_list("pk").first()
        store_host_facts(host, inventory, now)
        store_domains(host, inventory, now)
    return host


def refresh_vm(vm_id: int, snap: Mapping[str, Any]) -> bool:
    """Store one VM as a change's snapshot shows it (``DomainSnapshot.as_dict()``, read from
    libvirt right after the change); False when there is nothing to store it against.

    Costs no libvirt call and a constant number of queries whatever the number of domains on
    the host, so a change's latency does not grow with the host (the whole-host sync every
    300 s still catches everything else). A snapshot of another domain is refused.
    """
    vm = VirtualMachine.objects.select_related("host").get(pk=vm_id)
    topology = load_topology(vm.host)
    if topology is None or not snap:
        return False
    dom = domain_from_snapshot(snap)
    if dom.uuid.lower() != str(vm.uuid).lower():
        raise ValueError(f"snapshot of domain {dom.uuid} is not VM {vm.uuid}")
    with transaction.atomic():
        store_domain(vm, dom, topology, timezone.now())
    return True
