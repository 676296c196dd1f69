"""The Celery application: configuration comes from Django settings (CELERY_* names).

Every worker of this app also reports itself alive to the shared cache
(:class:`numaportal.liveness.ReportAlive`), which the status page reads.
"""

import os

from celery import Celery

from numaportal.liveness import ReportAlive

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "numaportal.settings")

app = Celery("numaportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.steps["consumer"].add(ReportAlive)
app.autodiscover_tasks()
