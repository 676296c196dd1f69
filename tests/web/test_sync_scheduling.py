"""Scheduling that does not stampede (issue 16, item 4), on the real Redis broker:

* the periodic sweeps spread a fleet's syncs and samples over their interval, each host at the
  same phase every time (read back from the messages in the Redis queue), while "Sync now"
  starts at once;
* one sync per host at a time: a pending one is not queued again, by a sweep, a click or both
  at once, unless it is stale (lost);
* a host that does not answer holds a real (prefork) worker no longer than its time limit, and
  the worker then runs the next host's sync.
"""

from __future__ import annotations

import ast
import json
import threading
import time
from datetime import datetime, timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from hosts.models import Host
from numaportal import spread
from tests.conftest import new_queue
from tests.silent_endpoint import SilentEndpoint
from tests.worker_process import WorkerProcess
from vms import requests

pytestmark = [pytest.mark.web, pytest.mark.django_db(transaction=True)]

TEST_URI = "test:///default"


@pytest.fixture
def queue(settings):
    """A central queue nobody consumes: the published messages stay in Redis to be read."""
    name = new_queue()
    settings.NUMAPORTAL_CENTRAL_QUEUE = name
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    yield name
    client.delete(name)


def queued_messages(name: str) -> list[dict]:
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    return [json.loads(raw) for raw in client.lrange(name, 0, -1)]


def host_of(message: dict) -> int:
    return ast.literal_eval(message["headers"]["argsrepr"])[0]


def hosts(count: int, **fields) -> list[Host]:
    Host.objects.bulk_create(
        Host(name=f"hv{i:03d}", uri=f"qemu+ssh://root@hv{i:03d}.example.net/system", **fields)
        for i in range(count)
    )
    return list(Host.objects.order_by("pk"))


# --- the spread -------------------------------------------------------------------------------


def test_the_periodic_sync_of_500_hosts_is_spread_over_its_window_at_stable_phases(
    queue, settings
) -> None:
    settings.NUMAPORTAL_SYNC_SPREAD_S = 230.0
    fleet = hosts(500, sync_status=Host.SyncStatus.OK)
    started = timezone.now()
    assert requests.sync_enabled_hosts() == 500
    first = queued_messages(queue)
    assert len(first) == 500
    offsets = {
        host_of(m): (datetime.fromisoformat(m["headers"]["eta"]) - started).total_seconds()
        for m in first
    }
    assert set(offsets) == {h.pk for h in fleet}
    # Not 500 at the same second: spread over the whole window, at most 3 in any one second.
    assert 0 <= min(offsets.values()) < 1 and 229 < max(offsets.values()) < 230.5
    per_second: dict[int, int] = {}
    for offset in offsets.values():
        per_second[int(offset)] = per_second.get(int(offset), 0) + 1
    assert max(per_second.values()) <= 3, max(per_second.values())
    # Each at its host's phase (give or take the sweep's own time).
    assert all(abs(offsets[h.pk] - spread.phase(h.pk, 230)) < 5 for h in fleet)

    # The next sweep, once those ran: every host at the same phase again.
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).delete(queue)
    Host.objects.update(sync_status=Host.SyncStatus.OK)
    started = timezone.now()
    assert requests.sync_enabled_hosts() == 500
    again = {
        host_of(m): (datetime.fromisoformat(m["headers"]["eta"]) - started).total_seconds()
        for m in queued_messages(queue)
    }
    assert all(abs(again[pk] - offsets[pk]) < 5 for pk in offsets)


def test_the_spread_fits_an_interval_an_operator_shortened(queue, settings) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    settings.NUMAPORTAL_SYNC_SPREAD_S = 230.0
    every_2_min, _ = IntervalSchedule.objects.get_or_create(every=120, period="seconds")
    PeriodicTask.objects.update_or_create(
        name="sync-all-hosts",
        defaults={"task": "hosts.tasks.sync_all_hosts", "interval": every_2_min},
    )
    hosts(100, sync_status=Host.SyncStatus.OK)
    started = timezone.now()
    assert requests.sync_enabled_hosts() == 100
    etas = [datetime.fromisoformat(m["headers"]["eta"]) for m in queued_messages(queue)]
    # 120 s minus the sync's hard time limit (70 s, but at most half the interval): 60 s.
    latest = max(etas) - started
    assert timedelta(seconds=55) < latest < timedelta(seconds=61)


def test_sync_now_starts_at_once(queue, settings) -> None:
    settings.NUMAPORTAL_SYNC_SPREAD_S = 230.0
    (host,) = hosts(1, sync_status=Host.SyncStatus.OK)
    assert requests.request_sync(host) is requests.SyncRequest.QUEUED
    (message,) = queued_messages(queue)
    assert message["headers"]["eta"] is None
    assert message["headers"]["id"] == host.sync_task_id


def test_a_spread_sample_expires_one_interval_after_its_planned_start(queue, settings) -> None:
    settings.NUMAPORTAL_SAMPLE_SPREAD_S = 30.0
    hosts(50, sync_status=Host.SyncStatus.OK)
    assert requests.sample_enabled_hosts() == 50
    messages = queued_messages(queue)
    assert len(messages) == 50
    etas = []
    for message in messages:
        eta = datetime.fromisoformat(message["headers"]["eta"])
        expires = datetime.fromisoformat(message["headers"]["expires"])
        # Counted from its own start, not from the sweep: the offset cannot make it expire.
        assert expires - eta == timedelta(seconds=settings.NUMAPORTAL_SAMPLE_INTERVAL)
        etas.append(eta)
    assert max(etas) - min(etas) > timedelta(seconds=25)


# --- one sync per host at a time ---------------------------------------------------------------


def test_a_pending_sync_is_not_queued_twice_by_a_click_or_a_sweep(queue) -> None:
    (host,) = hosts(1, sync_status=Host.SyncStatus.OK)
    assert requests.request_sync(host) is requests.SyncRequest.QUEUED
    task_id = host.sync_task_id
    again = Host.objects.get(pk=host.pk)
    assert requests.request_sync(again) is requests.SyncRequest.PENDING
    assert requests.sync_enabled_hosts() == 0
    Host.objects.filter(pk=host.pk).update(sync_status=Host.SyncStatus.RUNNING)
    assert requests.request_sync(again) is requests.SyncRequest.PENDING
    assert requests.sync_enabled_hosts() == 0
    assert len(queued_messages(queue)) == 1
    assert Host.objects.get(pk=host.pk).sync_task_id == task_id  # the page follows that one


def test_a_lost_sync_stops_blocking_its_host_once_stale(queue, settings) -> None:
    hosts(1, sync_status=Host.SyncStatus.RUNNING)
    limit = settings.NUMAPORTAL_CHECK_TIME_LIMIT + settings.NUMAPORTAL_HARD_LIMIT_GRACE + 60
    # Started just within the hard time limit (+ a minute): maybe still running.
    Host.objects.update(sync_due_at=timezone.now() - timedelta(seconds=limit - 5))
    assert requests.sync_enabled_hosts() == 0
    # Older than that: its worker was killed; queued again (and a "running" state never
    # stamped, from before this field existed, does not block for ever either).
    Host.objects.update(sync_due_at=timezone.now() - timedelta(seconds=limit + 5))
    assert requests.sync_enabled_hosts() == 1
    Host.objects.update(sync_status=Host.SyncStatus.RUNNING, sync_due_at=None)
    assert requests.request_sync(Host.objects.get()) is requests.SyncRequest.QUEUED
    assert len(queued_messages(queue)) == 2


def test_concurrent_sweeps_and_clicks_queue_one_sync(queue) -> None:
    (host,) = hosts(1, sync_status=Host.SyncStatus.OK)
    start = threading.Barrier(8)
    outcomes: list[object] = []

    def race(sweep: bool) -> None:
        try:
            mine = Host.objects.get(pk=host.pk)  # each read "in sync" before anyone queued
            start.wait(10)
            outcome = requests.sync_enabled_hosts() if sweep else requests.request_sync(mine)
            outcomes.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(i % 2 == 0,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == 8
    queued = [o for o in outcomes if o in (1, requests.SyncRequest.QUEUED)]
    assert len(queued) == 1, outcomes
    assert len(queued_messages(queue)) == 1


# --- a host that does not answer, on a real worker ----------------------------------------------


def wait_for(host: Host, statuses: set[str], within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        host.refresh_from_db()
        if host.sync_status in statuses:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{host.name} still {host.sync_status!r} after {within} s")


@pytest.fixture
def central_queue(settings):
    name = new_queue()
    settings.NUMAPORTAL_CENTRAL_QUEUE = name
    return name


def test_a_silent_host_fails_after_the_libvirt_timeout_and_the_worker_moves_on(
    central_queue, tmp_path
) -> None:
    with SilentEndpoint() as endpoint:
        silent = Host.objects.create(name="silent", uri=endpoint.uri)
        good = Host.objects.create(name="good", uri=TEST_URI)
        worker = WorkerProcess(
            central_queue, tmp_path / "worker.log", pool="prefork", NUMAPORTAL_LIBVIRT_TIMEOUT="2"
        )
        try:
            requests.request_sync(silent)
            requests.request_sync(good)  # queued behind it, on the worker's one process
            took = wait_for(silent, {Host.SyncStatus.ERROR, Host.SyncStatus.OK}, 15)
            assert silent.sync_status == Host.SyncStatus.ERROR
            assert silent.last_error == f"timed out after 2s connecting to {endpoint.uri}"
            assert took < 2 + 5, took
            wait_for(good, {Host.SyncStatus.ERROR, Host.SyncStatus.OK}, 30)
            assert good.sync_status == Host.SyncStatus.OK, good.last_error
        finally:
            worker.close()


def test_a_sync_over_its_time_limit_is_stopped_recorded_and_released(
    central_queue, tmp_path, settings
) -> None:
    """A sync that would take longer than its limit (here: an open that waits 60 s on a silent
    host, with a 3 s limit) ends at the limit with the timeout on the host, the host is free
    for a new sync, and the same worker runs the next task."""
    # The limits travel in the message, from the publisher's settings (this process's).
    settings.NUMAPORTAL_SYNC_TIME_LIMIT = 3.0
    with SilentEndpoint() as endpoint:
        slow = Host.objects.create(name="slow", uri=endpoint.uri)
        good = Host.objects.create(name="good", uri=TEST_URI)
        worker = WorkerProcess(
            central_queue,
            tmp_path / "worker.log",
            pool="prefork",
            NUMAPORTAL_LIBVIRT_TIMEOUT="60",
        )
        try:
            requests.request_sync(slow)
            requests.request_sync(good)
            took = wait_for(slow, {Host.SyncStatus.ERROR, Host.SyncStatus.OK}, 30)
            assert slow.sync_status == Host.SyncStatus.ERROR
            assert slow.last_error == "sync timed out after 3 s"
            assert 3 <= took < 3 + 5, took
            wait_for(good, {Host.SyncStatus.ERROR, Host.SyncStatus.OK}, 30)
            assert good.sync_status == Host.SyncStatus.OK, good.last_error
            # Released: "Sync now" queues a new one (not "already pending").
            assert requests.request_sync(slow) is requests.SyncRequest.QUEUED
            assert endpoint.accepted >= 1
        finally:
            worker.close()
