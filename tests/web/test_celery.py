"""Celery over the real Redis broker: a worker runs tasks that talk to libvirt."""

import time

import pytest
from django.core.cache import cache

from hosts import tasks as host_tasks
from numaportal.virt.errors import HostUnreachable
from tests.conftest import embedded_worker, new_queue
from web import status
from web import tasks as portal_tasks

pytestmark = [pytest.mark.web, pytest.mark.django_db(transaction=True)]


def test_worker_describes_the_lab_host(worker_queue):
    result = host_tasks.describe_host.apply_async(args=["qemu:///system"], queue=worker_queue)
    info = result.get(timeout=30)
    assert info["URI"] == "qemu:///system"
    assert info["Hypervisor"].startswith("QEMU")
    assert int(info["Host CPUs"]) >= 1


def test_worker_reports_libvirt_refusal_as_task_error(worker_queue):
    result = host_tasks.describe_host.apply_async(
        args=["qemu+tcp://127.0.0.1:1/system"], queue=worker_queue
    )
    with pytest.raises(HostUnreachable) as excinfo:
        result.get(timeout=30)
    # libvirt's own words reach the caller through the worker and the result backend.
    assert "127.0.0.1" in str(excinfo.value)


def test_heartbeat_task_marks_beat_alive(worker_queue):
    cache.delete(status.HEARTBEAT_KEY)
    assert not status.check_beat().ok
    portal_tasks.heartbeat.apply_async(queue=worker_queue)
    # the task ignores its result; poll the cache it writes
    for _ in range(100):
        if status.check_beat().ok:
            break
        time.sleep(0.1)
    assert status.check_beat().ok


def workers_row_with(queue: str, present: bool = True) -> status.ComponentStatus:
    """The status page's workers row, once a worker consuming *queue* is (not) on it."""
    for _ in range(50):
        row = status.check_workers()
        if any(queue in queues for queues in row.facts.values()) == present:
            break
        time.sleep(0.1)
    return row


def test_home_page_sees_the_worker(worker_queue):
    # The worker reports itself when its consumer starts (numaportal.liveness), no ping.
    row = workers_row_with(worker_queue)
    assert row.ok, row.detail
    assert "@" in row.detail  # worker names are name@host
    (queues,) = [q for q in row.facts.values() if worker_queue in q]
    assert queues.startswith(f"queues {worker_queue};")


def test_a_stopped_worker_leaves_the_home_page():
    queue = new_queue()
    with embedded_worker(queue) as worker:
        assert worker.hostname in workers_row_with(queue).facts
    # it removes its report when it stops, without waiting for the report's expiry
    assert worker.hostname not in status.check_workers().facts
