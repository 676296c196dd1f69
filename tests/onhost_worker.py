"""A real on-host worker for tests: ``celery worker`` in a process of its own, with NO database.

``NUMAPORTAL_ON_HOST`` set makes the settings use Django's dummy database backend (and the
DATABASE_URL of the test run is removed besides), so any task of it that touched the database
would fail instead of passing by luck; everything it does must come back through the broker,
as on a real hypervisor. A separate process, not a
thread: two Celery workers in one process share one app (and its connection pools and Django
fixups), which is not how production runs either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from numaportal.celery import app

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0


@contextmanager
def on_host_worker(
    queue: str, host_name: str, *, probe_root: str | os.PathLike[str] = "/", uri: str = ""
) -> Iterator[str]:
    """``with on_host_worker(queue, "hv1", probe_root=...) as hostname:`` a worker consuming
    *queue* that believes it runs on *host_name* (``NUMAPORTAL_ON_HOST``)."""
    hostname = f"onhost-{uuid.uuid4().hex[:8]}@test"
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DJANGO_SETTINGS_MODULE": "numaportal.settings",
        "NUMAPORTAL_ON_HOST": host_name,
        "NUMAPORTAL_PROBE_ROOT": str(probe_root),
        "NUMAPORTAL_ON_HOST_URI": uri,
        "CELERY_BROKER_URL": app.conf.broker_url,
        "CELERY_RESULT_BACKEND": str(app.conf.result_backend),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "numaportal",
            "worker",
            "--queues",
            queue,
            "--pool",
            "solo",
            "--hostname",
            hostname,
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_ready(proc, hostname)
        yield hostname
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[str], hostname: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the on-host worker exited ({proc.returncode}):\n{output}")
        if app.control.ping(destination=[hostname], timeout=0.5):
            return
    proc.terminate()
    output = proc.communicate(timeout=20)[0]
    raise AssertionError(f"the on-host worker did not answer within {START_TIMEOUT} s:\n{output}")
