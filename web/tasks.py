"""Project-wide Celery tasks.

The task keeps its first name, ``numaportal.tasks.heartbeat``: beat rows in the database name it.
"""

from celery import shared_task

from web import status


@shared_task(name="numaportal.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Scheduled by beat and run by a worker: its timestamp proves both are alive."""
    status.record_heartbeat()
