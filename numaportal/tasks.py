"""Project-wide Celery tasks."""

from celery import shared_task

from numaportal import status


@shared_task(name="numaportal.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Scheduled by beat and run by a worker: its timestamp proves both are alive."""
    status.record_heartbeat()
