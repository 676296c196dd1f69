"""The failure drills (:mod:`web.drills`, ``scripts/drill``) against a Redis of this test's own
(a ``redis-server`` on a free loopback port, stopped and started by the drill; the shared Redis
is never touched), real Celery workers (a thread; a process of its own for the worker-killed
drill, which kills it) and libvirt's ``test:///default``.
"""

from __future__ import annotations

import gc
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import redis
from kombu import pools as kombu_pools

from changes import locks
from hosts.models import Host
from numaportal.celery import app
from tests.conftest import embedded_worker, free_port, new_queue
from tests.worker_process import WorkerProcess
from vms import sync
from vms.models import VirtualMachine
from web import drills

pytestmark = [pytest.mark.web, pytest.mark.django_db(transaction=True)]

URI = "test:///default"


class OwnRedis:
    """A redis-server of this test's own: ``stop()`` kills it, ``start()`` starts it again
    on the same port (what ``scripts/drill`` does to `make run`'s Redis)."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} did not answer")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def _point_at(broker: str, cache_location: str, settings, backend: str | None = None) -> None:
    settings.CELERY_BROKER_URL = broker
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": cache_location}}
    app.conf.broker_url = app.conf.broker_read_url = app.conf.broker_write_url = broker
    # The result backend too, as in make run (it defaults to the broker's Redis): a publish
    # that keeps a result subscribes to it, and that waited ~19 s for a stopped Redis.
    app.conf.result_backend = backend or broker
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)
    # kombu keeps one connection pool per broker URL in a process-wide registry, and app.pool
    # hands it out again: closing the pool alone would leave later tests a closed pool
    # ("Acquire on closed pool"). reset() closes them all and empties the registry.
    kombu_pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
    # app.control's mailbox (ping, inspect) caches the producer pool it first used
    # (kombu's Mailbox.producer_pool is a cached_property): reset() closed it, so every later
    # ping would fail with "Acquire on closed pool" (CI run 2: 19 tests after this one).
    app.control.mailbox.__dict__.pop("producer_pool", None)
    locks._redis_clients.clear()


@pytest.fixture
def own_redis(settings, tmp_path) -> Iterator[OwnRedis]:
    """Broker and cache on a redis-server of this test's own."""
    server = OwnRedis(free_port(), tmp_path)
    server.start()
    old_broker, old_cache = app.conf.broker_url, settings.CACHES["default"]["LOCATION"]
    old_backend = app.conf.result_backend
    _point_at(f"{server.url}/0", f"{server.url}/1", settings)
    assert app.connection_for_write().as_uri().endswith(f":{server.port}/0")
    assert app.connection_for_read().as_uri().endswith(f":{server.port}/0")
    try:
        yield server
    finally:
        server.stop()
        _point_at(old_broker, old_cache, settings, old_backend)


@pytest.fixture
def test_driver_vm() -> Iterator[VirtualMachine]:
    """The test driver's domain "test" on a synced host; one connection held open keeps the
    driver's state (its pins) between the workers' connections."""
    gc.collect()
    conn = libvirt.open(URI)
    host = Host.objects.create(name="td", uri=URI)
    sync.sync_host(host.pk)
    yield VirtualMachine.objects.select_related("host").get(host=host, name="test")
    conn.close()
    gc.collect()


@pytest.fixture
def workers(settings, own_redis) -> Iterator[str]:
    """A real worker (thread) on a queue of its own, over this test's Redis. (Two embedded
    workers in one process never consumed a task here: all 100 stayed queued.)"""
    queue = new_queue()
    settings.NUMAPORTAL_CENTRAL_QUEUE = queue
    with embedded_worker(queue):
        yield queue


def test_redis_down_pages_render_requests_fail_at_once_and_recover(
    own_redis, workers, test_driver_vm, client, operator
) -> None:
    client.force_login(operator)
    result = drills.redis_down(
        test_driver_vm,
        operator,
        own_redis,
        drills.client_fetcher(client, drills.pages_of(test_driver_vm)),
    )
    print(result.report())
    assert result.ok, result.report()
    assert own_redis.process is not None  # started again


def test_a_hundred_conflicting_changes_are_serialised_and_none_is_lost(
    workers, test_driver_vm, operator
) -> None:
    result = drills.concurrent_changes(test_driver_vm, operator, count=100, timeout=240)
    print(result.report())
    assert result.ok, result.report()


def test_a_change_whose_worker_is_killed_ends_reconciled(
    settings, test_driver_vm, operator, tmp_path
) -> None:
    queue = new_queue()
    settings.NUMAPORTAL_CENTRAL_QUEUE = queue
    # It must still be waiting for the VM's lock when the drill kills it.
    worker = WorkerProcess(queue, tmp_path / "worker.log", NUMAPORTAL_CHANGE_LOCK_WAIT="120")
    try:
        result = drills.worker_killed(test_driver_vm, operator, worker, queued_older_than_s=3)
    finally:
        worker.close()
    print(result.report())
    assert result.ok, result.report() + "\n" + (tmp_path / "worker.log").read_text()
    assert worker.process.returncode == -signal.SIGKILL
