"""Celery tasks for hosts: thin wrappers that load arguments and call services."""

import logging

from celery import shared_task

from hosts import services
from hosts.models import Host

log = logging.getLogger(__name__)


@shared_task(name="hosts.tasks.describe_host")
def describe_host(uri: str) -> dict[str, str]:
    """Run on a worker so that the libvirt connection is made where the workers are."""
    return services.describe_host(uri)


@shared_task(name="hosts.tasks.sync_host")
def sync_host(host_id: int) -> dict[str, str]:
    """Sync one host. A host's failure is recorded on the host (and returned), not raised:
    a broken host must not fill the worker log with tracebacks every five minutes."""
    try:
        host = services.sync_host(host_id)
    except Host.DoesNotExist:
        log.warning("sync of host %s skipped: no such host", host_id)
        return {"host": str(host_id), "status": "missing", "error": "no such host"}
    return {"host": host.name, "status": host.sync_status, "error": host.last_error}


@shared_task(name="hosts.tasks.sync_all_hosts")
def sync_all_hosts() -> int:
    """The periodic task: queue one sync per enabled host; returns how many were queued."""
    return services.sync_enabled_hosts()
