"""A ``celery worker`` of a drill's own: a process on a queue nobody else consumes, so that the
worker-killed drill can kill it with SIGKILL without touching the portal's own workers.

``manage.py drill`` starts it with the portal's settings (its environment); the tests add
their database and broker (:class:`tests.worker_process.WorkerProcess`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from django.conf import settings

from numaportal.celery import app

__all__ = ["DrillWorker", "drop_unacked"]


class DrillWorker:
    """``celery worker --queues QUEUE --pool solo`` in a process of its own, answering a ping
    when the constructor returns (RuntimeError with its log if it did not start).

    *pool* "prefork" (the Procfile's workers' pool, one child process) for what only that pool
    does, such as enforcing the tasks' time limits; its session is its own, so that killing
    it kills its child too."""

    def __init__(
        self,
        queue: str,
        log: Path,
        env: Mapping[str, str] | None = None,
        start_s: float = 60,
        pool: str = "solo",
    ) -> None:
        self.queue = queue
        self.hostname = f"drill-{uuid.uuid4().hex[:8]}@{os.uname().nodename}"
        self.log_path = log
        self.log = log.open("w")
        self.own_session = pool != "solo"
        extra = ["--concurrency", "1"] if self.own_session else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "numaportal", "worker", "--queues", queue,
             "--pool", pool, *extra, "--hostname", self.hostname, "--loglevel", "WARNING",
             "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=settings.BASE_DIR, env={**os.environ, **(env or {})},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=self.own_session,
        )  # fmt: skip
        deadline = time.monotonic() + start_s
        try:
            while not app.control.ping(destination=[self.hostname], timeout=0.5):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the drill's worker did not start: {log.read_text()}")
        except BaseException:
            # Whatever stopped the wait (no answer, a broker error in the ping itself), the
            # process must not outlive it: nobody else holds it to stop it.
            self.close()
            raise

    def kill(self) -> None:
        if self.own_session:
            os.killpg(self.process.pid, signal.SIGKILL)  # the pool's child as well
        else:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        """Kill it if it still runs; drop the message it died holding."""
        if self.process.poll() is None:
            self.kill()
        self.log.close()
        drop_unacked(self.queue)


def drop_unacked(queue: str) -> None:
    """The killed worker's unacked message: kombu would restore it to *queue*, which nobody
    consumes, after the visibility timeout, and it would sit there."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        client = channel.client
        for tag, value in client.hgetall(channel.unacked_key).items():
            if queue in value.decode():
                client.hdel(channel.unacked_key, tag)
                client.zrem(channel.unacked_index_key, tag)
