"""Celery tasks for hosts: thin wrappers that load arguments and call services."""

from celery import shared_task

from hosts import rollups, services


@shared_task(name="hosts.tasks.describe_host")
def describe_host(uri: str) -> dict[str, str]:
    """Run on a worker so that the libvirt connection is made where the workers are."""
    return services.describe_host(uri)


@shared_task(name="hosts.tasks.rollup_numastat")
def rollup_numastat() -> dict[str, int]:
    """Periodic (15 min): roll closed buckets up, then drop raw and rollups past retention."""
    return rollups.rollup_and_prune().as_dict()
