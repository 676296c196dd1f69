"""An on-host worker has no database: with NUMAPORTAL_ON_HOST set, whatever DATABASE_URL says,
a query fails loudly instead of reaching a database (checked in a fresh interpreter, since the
settings are read once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent.parent
PROBE = """
import django
django.setup()
from django.db import connection
from hosts.models import Host
print(connection.settings_dict["ENGINE"].rsplit(".", 1)[-1])
try:
    Host.objects.count()
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def run(**env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "numaportal.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def test_an_on_host_worker_cannot_reach_any_database(tmp_path) -> None:
    database = tmp_path / "would-be-created.sqlite3"
    lines = run(NUMAPORTAL_ON_HOST="hv01", DATABASE_URL=f"sqlite:///{database}")
    assert lines[0] == "dummy"
    assert lines[1].startswith("ImproperlyConfigured settings.DATABASES is improperly configured")
    assert not database.exists()


def test_a_central_process_keeps_its_database(tmp_path) -> None:
    lines = run(NUMAPORTAL_ON_HOST="", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert lines[0] == "sqlite3"
    assert lines[1].startswith("OperationalError no such table")  # a real, empty database
