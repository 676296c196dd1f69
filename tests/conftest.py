"""Shared fixtures for every tier."""

import uuid
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker

from numaportal.celery import app

FIXTURES = Path(__file__).parent / "fixtures"


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


@pytest.fixture
def worker_queue():
    """A real worker thread on a queue of its own, so a `make run` worker cannot steal tasks."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    with start_worker(
        app,
        queues=[queue],
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=10,
        loglevel="WARNING",
    ):
        yield queue
