"""Celery tasks for hosts: thin wrappers that load arguments and call services."""

import logging

from celery import shared_task

from hosts import sampling, services
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


@shared_task(name="hosts.tasks.sample_all_hosts")
def sample_all_hosts() -> int:
    """Periodic (60 s by default): queue one numastat sample per enabled host."""
    return sampling.sample_enabled_hosts()


@shared_task(name="hosts.tasks.probe_host")
def probe_host(host_id: int) -> dict[str, object]:
    """Routed to the host's own queue (host.<name>): reads its /sys and /proc, and libvirt."""
    return _sample(host_id, probe=True)


@shared_task(name="hosts.tasks.sample_host_libvirt")
def sample_host_libvirt(host_id: int) -> dict[str, object]:
    """For hosts without an on-host worker: free memory per cell through libvirt only."""
    return _sample(host_id, probe=False)


def _sample(host_id: int, *, probe: bool) -> dict[str, object]:
    try:
        return sampling.sample_host(host_id, probe=probe).as_dict()
    except Host.DoesNotExist:
        return {"host": str(host_id), "error": "no such host"}


@shared_task(name="hosts.tasks.rollup_numastat")
def rollup_numastat() -> dict[str, int]:
    """Periodic (15 min): roll closed buckets up, then drop raw and rollups past retention."""
    return sampling.rollup_and_prune().as_dict()
