"""The beat entry points that sweep the fleet, and the heartbeat.

They sit at the top because a sweep queues the per-host tasks of the layers below (a sweep
task living next to the tasks it queues would make that module import itself in a circle).
The task names keep their first modules (``numaportal.tasks.heartbeat``,
``hosts.tasks.sync_all_hosts``, ...): beat rows in the database name them.
"""

from celery import shared_task

from balancing import scheduler
from vms import requests
from web import status


@shared_task(name="numaportal.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Scheduled by beat and run by a worker: its timestamp proves both are alive."""
    status.record_heartbeat()


@shared_task(name="hosts.tasks.sync_all_hosts")
def sync_all_hosts() -> int:
    """The periodic task: queue one sync per enabled host; returns how many were queued."""
    return requests.sync_enabled_hosts()


@shared_task(name="hosts.tasks.sample_all_hosts")
def sample_all_hosts() -> int:
    """Periodic (60 s by default): queue one numastat sample per enabled host."""
    return requests.sample_enabled_hosts()


@shared_task(name="balancing.tasks.balance_hosts")
def balance_hosts() -> int:
    """Periodic (beat entry "balance-hosts"): every host's balancing policy; plans made."""
    return scheduler.balance_hosts()
