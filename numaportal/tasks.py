"""Periodic housekeeping of the core: the login logs django-axes keeps.

(The heartbeat's task is named ``numaportal.tasks.heartbeat`` but lives in :mod:`web.tasks`
with the other beat entry points, under the name its beat row already had.)
"""

from axes.handlers.proxy import AxesProxyHandler
from celery import shared_task
from django.conf import settings


@shared_task(name="numaportal.tasks.prune_login_logs")
def prune_login_logs() -> int:
    """Periodic (beat entry "prune-login-logs", daily): delete the login logs (axes'
    AccessLog rows) older than ``NUMAPORTAL_LOGIN_LOG_DAYS``; returns how many went."""
    return AxesProxyHandler.reset_logs(age_days=settings.NUMAPORTAL_LOGIN_LOG_DAYS)
