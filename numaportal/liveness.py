"""Which Celery workers are alive, from what each of them says about itself.

Every worker of the app (``celery -A numaportal worker``, and the test suite's embedded ones)
runs the consumer bootstep :class:`ReportAlive`: when its consumer starts, and then every
:data:`REPORT_INTERVAL` seconds, it writes "worker <hostname> alive at <time>, queues ..." into
the shared cache (Redis, ``CACHE_URL``) under a key of its own that expires after
:data:`REPORT_TTL` seconds; it deletes the key when it stops. The status page reads those keys
(:func:`alive`: two cache reads, whatever the number of workers) instead of a broadcast ping,
which always waits its whole timeout for the replies of workers that may not exist.

A bootstep rather than Celery's ``heartbeat_sent`` signal: that one only fires while event
heartbeats are on (``--without-heartbeat`` and the embedded test workers turn them off) and
does not know the worker's queues; a bootstep runs in every worker and reads its consumer.

Cache keys cannot be listed, so the hostnames are kept in one registry key as well: a worker
puts itself there at each report and drops the names whose own key has expired (two workers
that start at the same moment may overwrite each other's addition; the next report repairs it).
A worker that dies without stopping disappears when its key expires, within :data:`REPORT_TTL`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from celery import bootsteps
from django.core.cache import cache

__all__ = ["REPORT_INTERVAL", "REPORT_TTL", "ReportAlive", "WorkerReport", "alive", "forget"]

log = logging.getLogger(__name__)

#: Seconds between two reports of one worker.
REPORT_INTERVAL = 5.0
#: A report older than this (three missed reports) no longer counts: its key has expired.
REPORT_TTL = 3 * REPORT_INTERVAL

_REGISTRY = "workers-alive"


def _key(hostname: str) -> str:
    return f"worker-alive:{hostname}"


@dataclass(frozen=True)
class WorkerReport:
    """A worker's last report: its name (``name@host``), when, and the queues it consumes."""

    hostname: str
    at: float
    queues: tuple[str, ...]


def report(hostname: str, queues: Iterable[str], now: float | None = None) -> None:
    """Record that worker *hostname* is alive now and consumes *queues*."""
    at = time.time() if now is None else now
    cache.set(_key(hostname), {"at": at, "queues": sorted(queues)}, timeout=REPORT_TTL)
    names = set(cache.get(_REGISTRY) or ())
    present = set(cache.get_many([_key(name) for name in names]))
    keep = {name for name in names if _key(name) in present} | {hostname}
    if keep != names:
        cache.set(_REGISTRY, sorted(keep), timeout=None)


def forget(hostname: str) -> None:
    """Worker *hostname* stopped: it is no longer listed (without waiting for the expiry)."""
    cache.delete(_key(hostname))
    names = set(cache.get(_REGISTRY) or ())
    if hostname in names:
        cache.set(_REGISTRY, sorted(names - {hostname}), timeout=None)


def alive(now: float | None = None) -> list[WorkerReport]:
    """The workers that reported within :data:`REPORT_TTL` seconds, by hostname."""
    now = time.time() if now is None else now
    names = cache.get(_REGISTRY) or []
    found = cache.get_many([_key(name) for name in names])
    reports = [
        WorkerReport(name, float(value["at"]), tuple(value["queues"]))
        for name in names
        if (value := found.get(_key(name))) is not None
    ]
    return sorted(
        (r for r in reports if now - r.at <= REPORT_TTL), key=lambda r: r.hostname.casefold()
    )


class ReportAlive(bootsteps.StartStopStep):
    """Consumer bootstep: :func:`report` on start and every :data:`REPORT_INTERVAL` seconds on
    the consumer's timer, :func:`forget` on stop. A failing cache is logged, never raised: the
    worker's tasks matter more than its entry on the status page."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c, **kwargs) -> None:
        self.tref = None
        super().__init__(c, **kwargs)

    def start(self, c) -> None:
        self._report(c)
        self.tref = c.timer.call_repeatedly(REPORT_INTERVAL, self._report, (c,))

    def stop(self, c) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        try:
            forget(c.hostname)
        except Exception as exc:  # any cache failure; the worker stops anyway
            log.warning("could not remove %s from the live workers: %s", c.hostname, exc)

    shutdown = stop

    def _report(self, c) -> None:
        queues = [queue.name for queue in c.task_consumer.queues] if c.task_consumer else []
        try:
            report(c.hostname, queues)
        except Exception as exc:  # any cache failure: the next report tries again
            log.warning("could not report %s alive: %s", c.hostname, exc)
