"""Celery tasks for hosts: thin wrappers that load arguments and call services.

``probe_host`` and ``numa_balancing`` run on a host's own worker (queue ``host.<name>``): they
take names, not database ids, touch no database and return JSON through the broker.
"""

from celery import shared_task
from django.conf import settings

from hosts import onhost, probing, rollups, services


@shared_task(name="hosts.tasks.describe_host")
def describe_host(uri: str) -> dict[str, str]:
    """Run on a worker so that the libvirt connection is made where the workers are."""
    return services.describe_host(uri)


@shared_task(name="hosts.tasks.rollup_numastat")
def rollup_numastat() -> dict[str, int]:
    """Periodic (15 min): roll closed buckets up, then drop raw and rollups past retention."""
    return rollups.rollup_and_prune().as_dict()


# A probe reads every VM's numa_maps, longer than one libvirt call on a big host; past one
# sampling interval its answer is superseded by the next one anyway (vms.tasks: why a limit).
_PROBE_LIMIT_S = max(settings.NUMAPORTAL_SAMPLE_TIME_LIMIT, settings.NUMAPORTAL_SAMPLE_INTERVAL)


@shared_task(
    name="hosts.tasks.probe_host",
    soft_time_limit=_PROBE_LIMIT_S,
    time_limit=_PROBE_LIMIT_S + settings.NUMAPORTAL_HARD_LIMIT_GRACE,
)
def probe_host(host_name: str, uri: str, worker_queue: str) -> dict[str, object]:
    """On-host: read one sample and hand it back (``vms.tasks.store_sample`` stores it)."""
    return probing.take_sample(host_name, uri, worker_queue, probe=True).to_message()


@shared_task(name="hosts.tasks.numa_balancing")
def numa_balancing(host_name: str, worker_queue: str, value: int | None) -> dict[str, object]:
    """On-host: read (``value`` None) or write /proc/sys/kernel/numa_balancing."""
    return onhost.answer_numa_balancing(host_name, worker_queue, value)


@shared_task(name="hosts.tasks.vm_memory")
def vm_memory(host_name: str, worker_queue: str, vm_name: str) -> dict[str, object]:
    """On-host: a VM's memory per cell now (its QEMU's numa_maps)."""
    return onhost.answer_vm_memory(host_name, worker_queue, vm_name)


@shared_task(name="hosts.tasks.migrate_pages")
def migrate_pages(
    host_name: str, worker_queue: str, vm_name: str, cells: list[int], timeout: float
) -> dict[str, object]:
    """On-host: migratepages of a VM's QEMU onto *cells*."""
    return onhost.answer_migrate_pages(host_name, worker_queue, vm_name, cells, timeout)
