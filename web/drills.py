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

from __future__ import annotations

import itertools
import statistics
import threading
import time
import uuid as uuid_module
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import connection
from django.utils.html import escape

from changes.kinds.base import snapshot_dict, vm_domain
from changes.locks import change_lock
from changes.models import Change
from changes.reconcile import INTERRUPTED, LOST, reconcile_stale_changes
from changes.requests import request_change
from hosts.models import Host, PhysicalCpu
from numaportal.celery import app
from numaportal.queueing import QUEUE_DOWN
from vms.models import VirtualMachine
from vms.requests import request_sync

__all__ = [
    "DaemonControl",
    "DrillResult",
    "Page",
    "PageFetcher",
    "RedisControl",
    "WorkerControl",
    "client_fetcher",
    "concurrent_changes",
    "libvirtd_stopped",
    "redis_down",
    "wait_ended",
    "worker_killed",
]

Status = Change.Status
ENDED = (Status.SUCCEEDED, Status.FAILED)


@dataclass
class DrillResult:
    name: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    def did(self, text: str) -> None:
        self.lines.append(f"did:  {text}")

    def saw(self, text: str) -> None:
        self.lines.append(f"saw:  {text}")

    def check(self, ok: bool, text: str) -> bool:
        self.lines.append(f"{'ok' if ok else 'FAIL'}:   {text}")
        self.ok = self.ok and ok
        return ok

    def report(self) -> str:
        head = f"== drill {self.name}: {'PASS' if self.ok else 'FAIL'}"
        figures = "; ".join(f"{k} {v}" for k, v in self.figures.items())
        return "\n".join([head, *self.lines, *([f"figures: {figures}"] if figures else [])])


class RedisControl(Protocol):
    """The Redis of the broker and the cache, which the drill may stop and start again."""

    def stop(self) -> None: ...

    def start(self) -> None: ...


class WorkerControl(Protocol):
    """The one worker consuming the drill's changes, which the drill kills with SIGKILL."""

    def kill(self) -> None: ...


class DaemonControl(Protocol):
    """The libvirtd of one host. ``pause()`` (SIGSTOP) makes it a daemon that accepts
    connections and answers nothing, as a hung one does; ``resume()`` (SIGCONT) undoes that;
    ``stop()`` shuts it down (paused or not); ``start()`` starts it again."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self) -> None: ...

    def start(self) -> None: ...


@dataclass(frozen=True)
class Page:
    path: str
    status: int
    seconds: float
    text: str


#: ``fetch()`` -> the pages a user reads, each with its HTTP status, time and text.
PageFetcher = Callable[[], list[Page]]


def pages_of(vm: VirtualMachine) -> list[str]:
    """The pages the drills read: home, hosts, the VM's host, VMs, the VM, the change list."""
    return [
        "/",
        "/hosts/",
        f"/hosts/{vm.host.name}/",
        "/vms/",
        f"/vms/{vm.host.name}/{vm.uuid}/",
        "/changes/",
    ]


def host_pages(hosts: list[Host]) -> list[str]:
    """Home, the host list and each host's page."""
    return ["/", "/hosts/", *(f"/hosts/{host.name}/" for host in hosts)]


def client_fetcher(client: Any, paths: list[str]) -> PageFetcher:
    """*paths* fetched through *client* (a logged-in ``django.test.Client``), in this process."""

    def fetch() -> list[Page]:
        pages = []
        for path in paths:
            started = time.monotonic()
            response = client.get(path)
            pages.append(
                Page(
                    path,
                    response.status_code,
                    time.monotonic() - started,
                    response.content.decode(errors="replace"),
                )
            )
        return pages

    return fetch


def _pages_render(result: DrillResult, fetch: PageFetcher, when: str) -> list[Page]:
    """Fetch the pages; check they all answer 200; the worst time as a figure."""
    pages = fetch()
    bad = [f"{p.path} {p.status}" for p in pages if p.status != 200]
    result.saw(", ".join(f"{p.path} {p.status} in {_ms(p.seconds)}" for p in pages))
    result.check(not bad, f"{len(pages)} pages render {when}" + (f": {bad}" if bad else ""))
    worst = max((p.seconds for p in pages), default=0.0)
    result.figures[f"pages {when}"] = f"200 in at most {_ms(worst)}"
    return pages


def wait_ended(ids: list[Any], timeout: float) -> dict[str, int]:
    """Wait until every change in *ids* ended (or *timeout*); the count per status."""
    deadline = time.monotonic() + timeout
    while True:
        counts: dict[str, int] = {}
        for status in Change.objects.filter(pk__in=ids).values_list("status", flat=True):
            counts[status] = counts.get(status, 0) + 1
        pending = counts.get(Status.QUEUED, 0) + counts.get(Status.RUNNING, 0)
        if not pending or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _pin_request(
    vm: VirtualMachine, actor: Any, cpuset: str, reason: str, group: Any, scope: str = "live"
) -> Change:
    """An emulatorpin, live by default (live only: the VM's config is left as it was;
    libvirt's test driver pins vCPUs only with flags no scope sends, but takes a live emulator
    pin)."""
    return request_change(
        actor=actor,
        target=vm,
        kind="emulatorpin",
        params={"cpuset": cpuset},
        scope=scope,
        reason=reason,
        group_id=group,
    )


def _host_cpus(vm: VirtualMachine) -> list[int]:
    return sorted(PhysicalCpu.objects.filter(host=vm.host).values_list("cpu_id", flat=True))


def redis_down(
    vm: VirtualMachine,
    actor: Any,
    redis: RedisControl,
    fetch: PageFetcher,
    *,
    recover_timeout: float = 60.0,
) -> DrillResult:
    """Stop Redis; the pages render, a change request fails at once with a clear message and
    leaves a failed record; start Redis; a change goes through again. Redis is started again
    whatever happens."""
    result = DrillResult("redis-down")
    cpuset = str(_host_cpus(vm)[0])
    group = uuid_module.uuid4()
    redis.stop()
    result.did("stopped Redis (broker and cache)")
    try:
        _pages_render(result, fetch, "without Redis")

        started = time.monotonic()
        change = _pin_request(vm, actor, cpuset, "drill: redis down", group)
        took = time.monotonic() - started
        change.refresh_from_db()
        result.did(f"requested emulatorpin {cpuset} (live) of {vm.name}")
        result.saw(f"record {change.pk} {change.status} after {took:.2f} s: {change.error!r}")
        result.check(
            change.status == Status.FAILED and QUEUE_DOWN in change.error and took < 10,
            "the request failed at once with a clear message and left a failed record",
        )
        result.figures["change request failed in"] = f"{took:.2f} s"

        started = time.monotonic()
        request_sync(vm.host)
        took = time.monotonic() - started
        host = Host.objects.get(pk=vm.host_id)
        result.did(f"asked for a sync of {host.name} (Sync now)")
        result.saw(f"host {host.sync_status} after {took:.2f} s: {host.last_error!r}")
        result.check(
            host.sync_status == Host.SyncStatus.ERROR
            and f"could not queue the sync: {QUEUE_DOWN}" in host.last_error
            and took < 10,
            "the sync request failed at once and the host says why",
        )
    finally:
        restarted = time.monotonic()
        redis.start()
        result.did("started Redis again")

    # Recovery: the next change is queued and run by a worker once they have reconnected.
    deadline = restarted + recover_timeout
    while True:
        change = _pin_request(vm, actor, cpuset, "drill: redis back", group)
        change.refresh_from_db()
        if change.status != Status.FAILED:
            wait_ended([change.pk], max(deadline - time.monotonic(), 1))
            change.refresh_from_db()
        if change.status == Status.SUCCEEDED or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    recovered = time.monotonic() - restarted
    result.saw(f"record {change.pk} {change.status} {change.error!r}".rstrip())
    result.check(
        change.status == Status.SUCCEEDED, f"a change succeeded {recovered:.1f} s after the restart"
    )
    result.figures["recovered in"] = f"{recovered:.1f} s after the restart"
    host = _sync_and_wait(vm.host, max(deadline - time.monotonic(), 10))
    result.check(
        host.sync_status == Host.SyncStatus.OK, f"a sync of {host.name} went through: {host}"
    )
    pages = fetch()
    result.check(all(p.status == 200 for p in pages), "the pages render with Redis back")
    return result


_SYNC_PENDING = (Host.SyncStatus.QUEUED, Host.SyncStatus.RUNNING)


def _wait_sync(host: Host, timeout: float, pending: tuple[str, ...] = _SYNC_PENDING) -> Host:
    """The host once its sync status left *pending* (or after *timeout*)."""
    deadline = time.monotonic() + timeout
    while True:
        host = Host.objects.get(pk=host.pk)
        if host.sync_status not in pending or time.monotonic() > deadline:
            return host
        time.sleep(0.1)


def _sync_and_wait(host: Host, timeout: float) -> Host:
    request_sync(host)
    return _wait_sync(host, timeout)


def _sync_words(host: Host) -> str:
    return f"{host.get_sync_status_display()}" + (f": {host.last_error}" if host.last_error else "")


def libvirtd_stopped(
    host: Host,
    others: list[Host],
    daemon: DaemonControl,
    fetch: PageFetcher,
    *,
    timeout: float = 60.0,
) -> DrillResult:
    """The libvirtd of *host* stops while a sync of it is in flight: the sync ends with
    libvirt's words on the host, the pages render, *others* sync as before; once the daemon is
    started again the next sync of *host* succeeds. The daemon is paused first so that the sync
    is really in flight (connected, waiting for an answer) when it stops; it is started again
    whatever happens."""
    result = DrillResult("libvirtd-stopped")
    daemon.pause()
    result.did(f"paused the libvirtd of {host.name} (SIGSTOP: connections hang)")
    try:
        request_sync(host)
        host = _wait_sync(host, timeout, pending=(Host.SyncStatus.QUEUED,))
        result.did(f"asked for a sync of {host.name}: {host.get_sync_status_display()}")
        if not result.check(
            host.sync_status == Host.SyncStatus.RUNNING, "the sync is in flight, waiting"
        ):
            return result
        stopped = time.monotonic()
        daemon.stop()
        result.did(f"stopped the libvirtd of {host.name} with the sync in flight")
        host = _wait_sync(host, timeout)
        took = time.monotonic() - stopped
        result.saw(f"{host.name}: {_sync_words(host)} ({took:.1f} s after the stop)")
        result.check(
            host.sync_status == Host.SyncStatus.ERROR and bool(host.last_error),
            f"{host.name} shows the sync failed, in libvirt's words",
        )
        result.figures["stop to error shown"] = f"{took:.1f} s"

        started = time.monotonic()
        host = _sync_and_wait(host, timeout)
        took = time.monotonic() - started
        result.did(f"asked for another sync of {host.name} with its libvirtd down")
        result.saw(f"{host.name}: {_sync_words(host)} ({took:.1f} s)")
        result.check(
            host.sync_status == Host.SyncStatus.ERROR and bool(host.last_error),
            "it fails with libvirt's words, not a hang",
        )
        result.figures["sync with libvirtd down failed in"] = f"{took:.1f} s"

        for other in others:
            other = _sync_and_wait(other, timeout)
            result.saw(f"{other.name}: {_sync_words(other)}")
            result.check(other.sync_status == Host.SyncStatus.OK, f"{other.name} syncs as before")
        if not others:
            result.saw("no other host in the portal to compare with")
        pages = _pages_render(result, fetch, f"with {host.name} down")
        host_page = next((p for p in pages if p.path == f"/hosts/{host.name}/"), None)
        result.check(
            host_page is not None and escape(host.last_error) in host_page.text,
            f"the page of {host.name} shows libvirt's words",
        )
    finally:
        restarted = time.monotonic()
        daemon.start()
        result.did(f"started the libvirtd of {host.name} again")
    deadline = restarted + timeout
    while True:
        host = _sync_and_wait(host, max(deadline - time.monotonic(), 5))
        if host.sync_status == Host.SyncStatus.OK or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    took = time.monotonic() - restarted
    result.saw(f"{host.name}: {_sync_words(host)}")
    result.check(host.sync_status == Host.SyncStatus.OK, f"{host.name} recovered on the next sync")
    result.figures["recovered in"] = f"{took:.1f} s after the start"
    return result


def concurrent_changes(
    vm: VirtualMachine,
    actor: Any,
    *,
    count: int = 100,
    submitters: int = 10,
    timeout: float = 300.0,
) -> DrillResult:
    """*count* conflicting live emulatorpin changes of *vm*, requested at once from
    *submitters* threads: every one gets a record, every record ends, the ones that ran never
    overlapped (the per-VM lock), and the host's pin is that of the last to succeed."""
    result = DrillResult("concurrent-changes")
    # Two CPUs in turn: every host has them (the test driver's host stores 16 CPUs from its
    # capabilities while its nodeinfo says 8, so CPUs past 7 are refused there).
    cpus = _host_cpus(vm)[:2]
    group = uuid_module.uuid4()
    barrier = threading.Barrier(submitters)
    errors: list[str] = []

    def submit(worker: int) -> list[Any]:
        ids = []
        try:
            barrier.wait()
            for i in range(worker, count, submitters):
                cpuset = str(cpus[i % len(cpus)])
                ids.append(_pin_request(vm, actor, cpuset, f"drill: race {i}", group).pk)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()
        return ids

    started = time.monotonic()
    with ThreadPoolExecutor(submitters) as pool:
        ids = [pk for chunk in pool.map(submit, range(submitters)) for pk in chunk]
    submitted = time.monotonic() - started
    result.did(
        f"requested {count} live emulatorpin changes of {vm.name} ({len(cpus)} CPUs in turn) "
        f"from {submitters} threads at once, in {submitted:.1f} s"
    )
    result.check(not errors and len(ids) == count, f"{len(ids)} records written, errors {errors}")
    counts = wait_ended(ids, timeout)
    elapsed = time.monotonic() - started
    result.saw(f"after {elapsed:.1f} s: {counts}")
    result.check(
        sum(counts.get(s, 0) for s in ENDED) == count, f"all {count} records ended (none lost)"
    )
    runs = list(
        Change.objects.filter(pk__in=ids, started_at__isnull=False)
        .order_by("started_at")
        .values("pk", "status", "started_at", "finished_at", "params")
    )
    overlaps = sum(
        1
        for a, b in itertools.pairwise(runs)
        if a["finished_at"] is None or b["started_at"] < a["finished_at"]
    )
    result.check(overlaps == 0, f"{len(runs)} changes ran, one at a time ({overlaps} overlaps)")
    succeeded = [r for r in runs if r["status"] == Status.SUCCEEDED]
    if succeeded:
        last = max(succeeded, key=lambda r: r["finished_at"])
        change = Change.objects.select_related("host", "vm").get(pk=last["pk"])
        with vm_domain(change, readonly=True) as dom:
            pin = snapshot_dict(dom)["emulatorpin_live"]
        result.saw(
            f"last to succeed: {last['pk']} (cpuset {last['params']['cpuset']}); host: {pin}"
        )
        result.check(pin == last["params"]["cpuset"], "the host's pin is the last applied change's")
        durations = [(r["finished_at"] - r["started_at"]).total_seconds() for r in succeeded]
        result.figures["on the worker"] = (
            f"p50 {_ms(statistics.median(durations))}, max {_ms(max(durations))}"
        )
    else:
        result.check(False, "no change succeeded")
    result.figures[f"{count} changes"] = (
        f"{counts.get(Status.SUCCEEDED, 0)} succeeded, {counts.get(Status.FAILED, 0)} failed, "
        f"all ended in {elapsed:.1f} s"
    )
    return result


#: The token of the VM's lock while the worker-killed drill holds it.
HOLDER = "drill-worker-killed"


def _delivered(change: Change) -> bool:
    """True once a worker has taken the change's task from the broker and not acked it
    (acks_late: the message sits in kombu's ``unacked`` hash until the task returns)."""
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        return any(str(change.pk) in v.decode() for v in channel.client.hvals(channel.unacked_key))


def worker_killed(
    vm: VirtualMachine,
    actor: Any,
    worker: WorkerControl,
    *,
    queued_older_than_s: float,
    daemon: DaemonControl | None = None,
    running_older_than_s: float | None = None,
    timeout: float = 60.0,
) -> DrillResult:
    """Kill -9 the worker that holds a change's task, then reconcile: the record ends (never
    stays queued or running), says so, and keeps the host's state read back.

    Without *daemon*, the worker is killed while the task is delivered and unacked and the
    change waits for the VM's lock, held by the drill as another running change would hold it
    (libvirt applies a pin in milliseconds, too fast to kill a change while it is ``running``):
    the record is ``queued`` with its task gone, and :func:`reconcile_stale_changes` ends it
    once it is older than *queued_older_than_s* (``NUMAPORTAL_CHANGE_QUEUED_TIMEOUT``).

    With *daemon* (the VM's libvirtd), the daemon is paused first, so the change is
    ``running`` (connecting to the host, waiting for an answer) when the worker dies; the
    daemon is resumed and the reconciliation ends the change once it has been running longer
    than *running_older_than_s* (the task's hard time limit and a margin). The change is
    config-only when the VM is shut off.

    *worker* must be the only worker of the drill's queue. The reconciliation ends the drill's
    change only, so the drill may run against a portal in use."""
    result = DrillResult("worker-killed" if daemon is None else "worker-killed-running")
    cpuset = str(_host_cpus(vm)[1])
    scope = "live" if vm.is_running else "config"
    group = uuid_module.uuid4()
    if daemon is None:
        change = _killed_waiting_for_the_lock(result, vm, actor, worker, cpuset, group, timeout)
        expected, waited = LOST, queued_older_than_s
    else:
        assert running_older_than_s is not None, "a running change's threshold is needed"
        change = _killed_running(result, vm, actor, worker, daemon, cpuset, group, scope, timeout)
        expected, waited = INTERRUPTED, running_older_than_s
    if change is None:
        return result
    killed = time.monotonic()
    change.refresh_from_db()
    result.saw(f"record {change.status} after the kill (the task died unacked with the worker)")

    while True:
        reconcile_stale_changes(
            older_than_s=running_older_than_s,
            queued_older_than_s=queued_older_than_s,
            only=[change.pk],
        )
        change.refresh_from_db()
        if change.status in ENDED or time.monotonic() > killed + waited + timeout:
            break
        time.sleep(0.2)
    took = time.monotonic() - killed
    result.saw(f"record {change.status} {took:.1f} s after the kill: {change.error!r}")
    result.check(
        change.status == Status.FAILED and change.error == expected,
        "the record ended failed, saying what happened, with the host's state read back",
    )
    result.check(took <= waited + 5, f"within the stated threshold ({waited:g} s) and 5 s")
    key = f"emulatorpin_{scope}"
    with vm_domain(change, readonly=True) as dom:
        pin = snapshot_dict(dom)[key]
    kept = (change.after or {}).get(key)
    result.saw(f"host's {key} {pin!r}; the record's state after {kept!r}")
    result.check(
        kept == pin and pin != cpuset,
        "the record's state after is the host's, which the killed change never touched",
    )
    result.figures["kill to ended record"] = f"{took:.1f} s (threshold {waited:g} s)"
    return result


def _killed_waiting_for_the_lock(
    result: DrillResult,
    vm: VirtualMachine,
    actor: Any,
    worker: WorkerControl,
    cpuset: str,
    group: Any,
    timeout: float,
) -> Change | None:
    """Hold the VM's lock, request a live pin, kill the worker once it waits for the lock."""
    holder = change_lock(Change(host=vm.host, vm=vm))
    if not holder.acquire(blocking=False, token=HOLDER):
        result.check(False, f"the lock of {vm.name} is held: another change is running")
        return None
    try:
        result.did(f"took the lock of {vm.name} as a running change would")
        change = _pin_request(vm, actor, cpuset, "drill: worker killed", group)
        result.did(f"requested emulatorpin {cpuset} (live) of {vm.name}: record {change.pk}")
        deadline = time.monotonic() + timeout
        while not _delivered(change) and time.monotonic() < deadline:
            time.sleep(0.05)
        change.refresh_from_db()
        if not result.check(
            _delivered(change) and change.status == Status.QUEUED,
            f"the worker took the task and waits for the lock (record {change.status})",
        ):
            return None
        worker.kill()
        result.did("killed the worker with SIGKILL")
        return change
    finally:
        holder.release()


def _killed_running(
    result: DrillResult,
    vm: VirtualMachine,
    actor: Any,
    worker: WorkerControl,
    daemon: DaemonControl,
    cpuset: str,
    group: Any,
    scope: str,
    timeout: float,
) -> Change | None:
    """Pause the VM's libvirtd, request a pin, kill the worker once the change is running."""
    daemon.pause()
    result.did(f"paused the libvirtd of {vm.host.name} (SIGSTOP: connections hang)")
    try:
        change = _pin_request(vm, actor, cpuset, "drill: worker killed", group, scope)
        result.did(f"requested emulatorpin {cpuset} ({scope}) of {vm.name}: record {change.pk}")
        deadline = time.monotonic() + timeout
        while change.status == Status.QUEUED and time.monotonic() < deadline:
            time.sleep(0.05)
            change.refresh_from_db()
        if not result.check(
            change.status == Status.RUNNING,
            f"the change is running, waiting for libvirtd (record {change.status})",
        ):
            return None
        worker.kill()
        result.did("killed the worker with SIGKILL")
        return change
    finally:
        daemon.resume()
        result.did(f"resumed the libvirtd of {vm.host.name}")
