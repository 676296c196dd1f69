"""NUMA Portal: NUMA and CPU placement of KVM virtual machines, from a browser."""

# Load the Celery app whenever Django starts so that @shared_task binds to it.
from numaportal.celery import app as celery_app

__all__ = ("celery_app",)
