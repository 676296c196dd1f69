"""numa_balancing on this very machine: the REAL /proc/sys/kernel/numa_balancing, switched
through changes.requests.request_numa_balancing, run by a central Celery worker (the
``worker_queue`` fixture) that asks the on-host worker: a ``celery worker`` process of its own
without a database (tests/onhost_worker.py), ``NUMAPORTAL_ON_HOST`` = the host row's name,
``NUMAPORTAL_PROBE_ROOT`` = "/".

``cat`` in a subprocess is the independent witness. The original value is ALWAYS written back
in a ``finally``, whatever the portal did. Needs root and a kernel with NUMA balancing (the lab
machine has both, with one NUMA node): never skipped.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from changes.models import Change
from changes.requests import request_numa_balancing
from hosts.models import Host
from tests.change_wait import wait_for_change
from tests.conftest import new_queue
from tests.onhost_worker import on_host_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PROC_FILE = Path("/proc/sys/kernel/numa_balancing")
TASK_WAIT = 60


def cat() -> str:
    """What the kernel says, read by another process."""
    return subprocess.run(
        ["cat", str(PROC_FILE)], check=True, capture_output=True, text=True, timeout=10
    ).stdout.strip()


def restore(value: str) -> None:
    """Write *value* back directly (not through the portal, which may be what failed)."""
    if cat() != value:
        with PROC_FILE.open("w") as f:
            f.write(f"{value}\n")
    assert cat() == value, f"could not restore {PROC_FILE} to {value}"


@pytest.fixture
def original() -> Iterator[str]:
    """The value before the test; written back afterwards in every case."""
    if not PROC_FILE.exists():
        pytest.fail(f"{PROC_FILE} does not exist: this kernel has no NUMA balancing")
    before = cat()
    try:
        yield before
    finally:
        restore(before)


@pytest.fixture
def lab_host(worker_queue: str, settings) -> Host:
    """This machine as a host with an on-host worker queue; this process is central only."""
    settings.NUMAPORTAL_ON_HOST = ""
    return Host.objects.create(name="lab", uri="qemu:///system", worker_queue=new_queue())


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("admin-int", "", "admin-int-password-123")


def wait(change: Change) -> Change:
    wait_for_change(change, TASK_WAIT)
    change.refresh_from_db()
    assert change.is_finished, change.status
    return change


def test_flip_the_real_numa_balancing_and_back(lab_host, admin, original) -> None:
    start = int(original)
    flipped = 0 if start else 1
    with on_host_worker(lab_host.worker_queue, "lab", probe_root="/"):
        change = wait(request_numa_balancing(lab_host, flipped, "integration: flip", admin))
    assert change.status == Change.Status.SUCCEEDED, change.error
    assert cat() == str(flipped)  # the kernel, asked by another process, agrees
    assert change.before == {"numa_balancing": start}
    assert change.after == {"numa_balancing": flipped}
    assert change.outcome.startswith(f"numa_balancing {start} -> {flipped} on host lab (live;")
    lab_host.refresh_from_db()
    assert lab_host.numa_balancing == flipped

    if start in (0, 1):  # the portal sets 0 and 1 only; 2 or 3 is restored by the fixture
        with on_host_worker(lab_host.worker_queue, "lab", probe_root="/"):
            back = wait(request_numa_balancing(lab_host, start, "integration: restore", admin))
        assert back.status == Change.Status.SUCCEEDED, back.error
        assert cat() == original
        assert back.before == {"numa_balancing": flipped}


def test_a_worker_on_another_host_leaves_the_real_file_alone(lab_host, admin, original) -> None:
    flipped = 0 if int(original) else 1
    with on_host_worker(lab_host.worker_queue, "elsewhere", probe_root="/"):
        change = wait(request_numa_balancing(lab_host, flipped, "integration: wrong worker", admin))
    assert change.status == Change.Status.FAILED
    assert "this worker runs on host 'elsewhere'" in change.error
    assert cat() == original
