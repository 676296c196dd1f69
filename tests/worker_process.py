"""The drills' own worker process (:class:`web.drill_worker.DrillWorker`) over this test's
database and broker (tests/web/test_drills.py, tests/integration/test_drills_libvirtd.py)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import connection

from numaportal.celery import app
from web.drill_worker import DrillWorker

__all__ = ["WorkerProcess"]


class WorkerProcess(DrillWorker):
    """A worker process on *queue* over this test's database (PostgreSQL, or SQLite's test
    database file), broker and cache; *pool*: see :class:`web.drill_worker.DrillWorker`."""

    def __init__(self, queue: str, log: Path, *, pool: str = "solo", **env: str) -> None:
        db = connection.settings_dict
        if "sqlite" in db["ENGINE"]:
            url = f"sqlite:///{db['NAME']}"  # the test database's file (settings: TEST NAME)
        else:
            url = (
                f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:"
                f"{db['PORT'] or 5432}/{db['NAME']}"
            )
        super().__init__(
            queue,
            log,
            {
                "DJANGO_SETTINGS_MODULE": "numaportal.settings",
                "DATABASE_URL": url,
                "CELERY_BROKER_URL": app.conf.broker_url,
                "CACHE_URL": settings.CACHES["default"]["LOCATION"],
                **env,
            },
            pool=pool,
        )
