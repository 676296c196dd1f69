"""Shared fixtures for every tier."""

import socket
import uuid
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings

from numaportal.celery import app

FIXTURES = Path(__file__).parent / "fixtures"

# The SQLite test database is a file under .run/ (numaportal/settings.py says why).
if "sqlite" in settings.DATABASES["default"]["ENGINE"]:
    Path(settings.DATABASES["default"]["TEST"]["NAME"]).parent.mkdir(exist_ok=True)


@pytest.fixture(autouse=True)
def sweeps_start_at_once(settings):
    """The periodic sweeps spread their hosts' tasks over minutes in production; a test that
    runs a sweep waits for its tasks, so here they start at once. The spread's own tests
    (tests/web/test_sync_scheduling.py) set it back."""
    settings.NUMAPORTAL_SYNC_SPREAD_S = 0
    settings.NUMAPORTAL_SAMPLE_SPREAD_S = 0


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def admin_password() -> str:
    return "correct-horse-battery-staple"


@pytest.fixture
def operator(django_user_model, admin_password):
    """A logged-in-able superuser, like the one `make run` creates."""
    return django_user_model.objects.create_superuser("ops", "", admin_password)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a daemon a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_queue() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def embedded_worker(queue: str):
    """``with embedded_worker(queue) as worker:`` a real worker thread consuming *queue*."""
    return start_worker(
        app,
        queues=[queue],
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=10,
        loglevel="WARNING",
    )


@pytest.fixture
def worker_queue(settings):
    """A real worker thread on a queue of its own, so a `make run` worker cannot steal tasks.

    It is this test's central queue too (syncs, changes, plans, stored samples), and a host
    registered with it as ``worker_queue`` has its on-host tasks there as well: one worker
    playing both parts, like `make run`'s worker for the lab on this machine."""
    queue = new_queue()
    settings.NUMAPORTAL_CENTRAL_QUEUE = queue
    with embedded_worker(queue):
        yield queue


def pytest_collection_modifyitems(config, items) -> None:
    """The NUMA lab's tests run last: `make test` boots that guest in the background when it
    starts, and the guest needs minutes (TCG) to bring up libvirtd and its on-host worker."""
    items.sort(key=lambda item: item.get_closest_marker("numalab") is not None)
