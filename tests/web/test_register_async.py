"""Issue 14, item 1: registering a host never blocks a web worker.

Before, the add-host request opened the URI itself: against an endpoint that accepts TCP and
never answers, the request took the whole timeout (15 s), and each attempt left its helper
thread and ESTABLISHED socket behind in the web process. Now the request validates, saves the
host "checking the connection" and queues ``vms.tasks.check_host``; a real Celery worker (over
the real Redis) tests the URI in a child process it kills on timeout, then syncs.

The endpoint here is a real socket on 127.0.0.1 that accepts and never answers. Threads are
counted as kernel task ids (/proc/self/task: the embedded worker runs in this process, so its
threads are counted too), sockets in /proc/net/tcp, children in /proc.
"""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from hosts.models import Host
from tests.silent_endpoint import (
    SilentEndpoint,
    child_processes,
    established_to,
    sockets_held_to,
    thread_ids,
)
from vms import tasks

pytestmark = [pytest.mark.web, pytest.mark.django_db(transaction=True)]

TIMEOUT = 4  # the connection test's (NUMAPORTAL_LIBVIRT_TIMEOUT)


@pytest.fixture
def warm_worker(worker_queue, settings):
    """The worker, past its first task (whatever it sets up lazily is not counted as ours)."""
    settings.NUMAPORTAL_LIBVIRT_TIMEOUT = TIMEOUT
    result = tasks.sync_host.apply_async(args=[999999], queue=worker_queue)
    assert result.get(timeout=30)["status"] == "missing"
    return worker_queue


def status_fragment(client, host: Host):
    return client.get(reverse("hosts:sync-status", args=[host.name]), {"polling": "1"})


def wait_until_not_polling(client, host: Host, timeout: float):
    """Poll the host page's status fragment as htmx does, until it asks for a page reload."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fragment = status_fragment(client, host)
        if fragment.get("HX-Refresh") == "true":
            return fragment
        time.sleep(0.2)
    raise AssertionError(f"still polling after {timeout} s: {fragment.content.decode()}")


def assert_nothing_left(endpoint: SilentEndpoint, threads: set[int], children: set[int]):
    assert thread_ids() - threads == set(), "a thread was left behind"
    assert child_processes() - children == set(), "a child process was left behind"
    assert established_to(endpoint.port) == 0, "an ESTABLISHED socket to the endpoint is left"
    assert sockets_held_to(endpoint.port) == 0


def test_registering_a_silent_host_returns_at_once_and_its_test_times_out_cleanly(
    ops_client, warm_worker
):
    with SilentEndpoint() as endpoint:
        threads, children = thread_ids(), child_processes()
        started = time.monotonic()
        response = ops_client.post(reverse("hosts:add"), {"name": "silent", "uri": endpoint.uri})
        elapsed = time.monotonic() - started
        # The response arrived while the endpoint stays silent: nothing in the request waited.
        assert elapsed < TIMEOUT / 2, f"the request took {elapsed:.2f} s"
        host = Host.objects.get(name="silent")
        assert response.status_code == 302 and response["Location"] == host.get_absolute_url()
        assert host.sync_status == Host.SyncStatus.CHECKING
        page = ops_client.get(host.get_absolute_url()).content.decode()
        assert "checking the connection…" in page and 'hx-trigger="every 2s"' in page
        # A viewer's page is not held up either while the test runs.
        started = time.monotonic()
        assert ops_client.get(reverse("hosts:list")).status_code == 200
        assert time.monotonic() - started < TIMEOUT / 2

        done = wait_until_not_polling(ops_client, host, TIMEOUT + 20)
        fragment = done.content.decode()
        assert endpoint.accepted == 1  # the worker's test did reach it and got no answer
        host.refresh_from_db()
        assert host.sync_status == Host.SyncStatus.CHECK_FAILED
        assert host.last_error == f"timed out after {TIMEOUT}s connecting to {endpoint.uri}"
        assert "connection test failed" in fragment and host.last_error in fragment
        assert 'id="retry-check"' in fragment
        # After the timeout, with the endpoint still holding its end open: nothing is left.
        assert_nothing_left(endpoint, threads, children)


def test_the_check_task_on_a_silent_host_leaves_nothing_behind(ops_client, warm_worker):
    with SilentEndpoint() as endpoint:
        host = Host.objects.create(
            name="silent", uri=endpoint.uri, sync_status=Host.SyncStatus.CHECKING
        )
        threads, children = thread_ids(), child_processes()
        started = time.monotonic()
        result = tasks.check_host.apply_async(args=[host.pk], queue=warm_worker)
        outcome = result.get(timeout=TIMEOUT + 20)
        elapsed = time.monotonic() - started
        assert outcome == {
            "host": "silent",
            "status": Host.SyncStatus.CHECK_FAILED,
            "error": f"timed out after {TIMEOUT}s connecting to {endpoint.uri}",
        }
        assert TIMEOUT <= elapsed < TIMEOUT + 5
        assert endpoint.accepted == 1
        assert_nothing_left(endpoint, threads, children)


def test_a_test_driver_host_is_tested_then_synced_by_the_worker(ops_client, warm_worker):
    response = ops_client.post(reverse("hosts:add"), {"name": "testdrv", "uri": "test:///default"})
    assert response.status_code == 302
    host = Host.objects.get(name="testdrv")
    wait_until_not_polling(ops_client, host, 60)
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.OK, host.last_error
    assert "answered in" in host.check_answer and "libvirt" in host.check_answer
    page = ops_client.get(host.get_absolute_url()).content.decode()
    assert host.check_answer in page
    assert host.vms.count() == 1
