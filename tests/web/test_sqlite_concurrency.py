"""SQLite as the embedded default: web, workers and beat write at once and no one sees
"database is locked".

Whatever database the suite itself runs on (PostgreSQL in CI), this test makes its own
file-backed SQLite database in ``tmp_path`` and starts writer processes on it
(:mod:`tests.web.sqlite_writers`): processes, not threads, because the portal's writers are
processes with a connection each. All of them start writing at the same moment and keep
writing for :data:`SECONDS`:

- :data:`WEB` processes requesting changes like the change form (``request_change`` in a
  transaction; the task is published on commit to the test broker, on a queue of this test's
  own that is deleted afterwards; the ``worker`` process below runs the records instead);
- :data:`SYNCS` workers syncing and sampling the host (``test:///default``) in a loop;
- one worker applying the queued changes (``changes.tasks.apply_change``: the record's
  steps, then the VM row refreshed);
- one beat writing its PeriodicTask rows as its DatabaseScheduler does.

With the portal's settings (IMMEDIATE transactions, busy timeout, WAL) no process sees an
error, and every change a web process was told it requested exists. With Django's own SQLite
defaults (DEFERRED, rollback journal, 5 s timeout) the same workload does get "database is
locked": a transaction that reads and then writes is refused at once when another connection
writes, whatever the timeout.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings

pytestmark = pytest.mark.web

SECONDS = 6.0
WEB = 3
SYNCS = 2
#: The whole run at most (it takes 10-15 s): seven processes setting up Django at once on a
#: loaded 2-CPU machine, then the writing.
START_TIMEOUT = 60.0
ROLES = ["web"] * WEB + ["sync"] * SYNCS + ["worker", "beat"]


def _env(db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = f"sqlite:///{db}"
    env["DJANGO_SETTINGS_MODULE"] = "numaportal.settings"
    # One worker applies the changes, so no change ever waits for another's lock for long.
    env["NUMAPORTAL_CHANGE_LOCK_WAIT"] = "5"
    env["LOG_LEVEL"] = "WARNING"  # an INFO line per write would only fill the logs
    return env


def _command(*args: str, legacy: bool) -> list[str]:
    return [sys.executable, "-m", "tests.web.sqlite_writers", *args, *(["--legacy"] * legacy)]


def run_workload(tmp_path: Path, *, legacy: bool) -> list[dict]:
    """Set up a fresh database, run every role at once; their reports."""
    db = tmp_path / "db.sqlite3"
    env = _env(db)
    queue = f"sqlite-concurrency-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(
        _command("setup", "--queue", queue, legacy=legacy),
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    logs = [tmp_path / f"{i}-{role}.log" for i, role in enumerate(ROLES)]
    log_files = [log.open("w") for log in logs]
    procs = [
        subprocess.Popen(
            _command(role, str(SECONDS), legacy=legacy),
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # A file, not a pipe: a process must never block on its log while it holds the lock.
            stderr=log_file,
            text=True,
        )
        for role, log_file in zip(ROLES, log_files, strict=True)
    ]
    # Bounded in time whatever happens: a process that hangs is killed, and the test fails.
    watchdog = threading.Timer(START_TIMEOUT, lambda: [p.kill() for p in procs])
    watchdog.start()
    try:
        for proc, log in zip(procs, logs, strict=True):  # set up and connected: start together
            assert proc.stdout.readline().strip() == "ready", log.read_text()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc, log in zip(procs, logs, strict=True):
            out, _ = proc.communicate()
            assert proc.returncode == 0, log.read_text()
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        watchdog.cancel()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for log_file in log_files:
            log_file.close()
        # The published tasks nobody consumes: the queue's list and kombu's bindings of it.
        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        for key in broker.scan_iter(match=f"*{queue}*"):
            broker.delete(key)
    return reports


def peak_concurrency(reports: list[dict]) -> int:
    """The most writes that were under way (waiting or writing) at one moment."""
    events = sorted(
        (t, step)
        for report in reports
        for start, end in report["spans"]
        for t, step in ((start, 1), (end, -1))
    )
    current = peak = 0
    for _t, step in events:
        current += step
        peak = max(peak, current)
    return peak


def stored_changes(db: Path) -> dict[str, str]:
    """Change id -> error of every record in *db* (read without Django: not its database)."""
    with sqlite3.connect(db) as conn:
        return {
            uuid.UUID(row[0]).hex: row[1]
            for row in conn.execute("SELECT id, error FROM changes_change")
        }


def test_writers_at_once_never_see_database_is_locked(tmp_path: Path) -> None:
    reports = run_workload(tmp_path, legacy=False)

    errors = {f"{r['role']}#{i}": r["errors"] for i, r in enumerate(reports) if r["errors"]}
    assert not errors, errors
    ops = {role: sum(r["ops"] for r in reports if r["role"] == role) for role in set(ROLES)}
    assert all(ops.values()), f"a role never wrote: {ops}"
    assert peak_concurrency(reports) >= 3, "the writers did not overlap: the test proves nothing"

    requested = {uuid.UUID(c).hex for r in reports for c in r.get("changes", [])}
    stored = stored_changes(tmp_path / "db.sqlite3")
    assert requested <= set(stored), f"changes lost: {sorted(requested - set(stored))[:5]}"
    locked = {c: e for c, e in stored.items() if "locked" in e}
    assert not locked, locked


def test_the_old_sqlite_settings_do_see_database_is_locked(tmp_path: Path) -> None:
    """Why the settings matter: Django's defaults under the same workload."""
    reports = run_workload(tmp_path, legacy=True)

    errors = [e for r in reports for e in r["errors"]]
    assert any("database is locked" in e for e in errors), errors
