"""Failure drills: what the portal does when Redis stops, when many changes to one VM race, when
a worker holding a change is killed, and when a host's libvirtd stops in the middle of a sync.
Each drill acts through the same services as the pages (:func:`changes.requests.request_change`)
and returns a :class:`DrillResult`: what it did, what it saw, pass or fail, and its figures.

``tests/web/test_drills.py`` runs them against a Redis of the test's own (a worker process of
its own for :func:`worker_killed`) and libvirt's ``test:///default``;
``tests/integration/test_drills_libvirtd.py`` runs :func:`libvirtd_stopped` and the worker
killed while its change is ``running`` against a real libvirtd of the test's own. They take the
Redis to stop, the worker to kill, the libvirtd to pause and stop and the page fetcher as
arguments so that ``manage.py drill`` (``scripts/drill``) drives them against a running portal.
"""

from web.drills.base import (
    DaemonControl,
    DrillResult,
    Page,
    PageFetcher,
    RedisControl,
    WorkerControl,
    client_fetcher,
    host_pages,
    pages_of,
    wait_ended,
)
from web.drills.concurrent_changes import concurrent_changes
from web.drills.libvirtd_stopped import libvirtd_stopped
from web.drills.redis_down import redis_down
from web.drills.worker_killed import worker_killed

__all__ = [
    "DaemonControl",
    "DrillResult",
    "Page",
    "PageFetcher",
    "RedisControl",
    "WorkerControl",
    "client_fetcher",
    "concurrent_changes",
    "host_pages",
    "libvirtd_stopped",
    "pages_of",
    "redis_down",
    "wait_ended",
    "worker_killed",
]
