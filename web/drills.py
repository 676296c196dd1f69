"""Failure drills: what the portal does when Redis stops, when many changes to one VM race, and
when a worker holding a change is killed.
Each drill acts through the same services as the pages (:func:`changes.requests.request_change`)
and returns a :class:`DrillResult`: what it did, what it saw, pass or fail, and its figures.

``tests/web/test_drills.py`` runs them against a Redis of the test's own (a worker process of
its own for :func:`worker_killed`) and libvirt's ``test:///default``. They take the Redis to
stop, the worker to kill and the page fetcher as arguments so that ``manage.py drill``
(``scripts/drill``) drives redis-down and concurrent-changes against a running portal. The
libvirtd-stopped drill is not written yet (issue 14).
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

from changes.kinds.base import snapshot_dict, vm_domain
from changes.locks import change_lock
from changes.models import Change
from changes.reconcile import LOST, reconcile_stale_changes
from changes.recording import QUEUE_DOWN
from changes.requests import request_change
from hosts.models import PhysicalCpu
from numaportal.celery import app
from vms.models import VirtualMachine

__all__ = [
    "DrillResult",
    "PageFetcher",
    "RedisControl",
    "WorkerControl",
    "concurrent_changes",
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


#: ``fetch()`` -> ``[(path, HTTP status, seconds), ...]`` for the pages a user reads.
PageFetcher = Callable[[], list[tuple[str, int, float]]]


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


def _pin_request(vm: VirtualMachine, actor: Any, cpuset: str, reason: str, group: Any) -> Change:
    """A live emulatorpin (live only: the VM's config is left as it was; libvirt's test driver
    pins vCPUs only with flags no scope sends, but takes a live emulator pin)."""
    return request_change(
        actor=actor,
        target=vm,
        kind="emulatorpin",
        params={"cpuset": cpuset},
        scope="live",
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
        pages = fetch()
        worst = max((s for _, _, s in pages), default=0.0)
        bad = [f"{p} {code}" for p, code, _ in pages if code != 200]
        result.saw(", ".join(f"{p} {code} in {_ms(s)}" for p, code, s in pages))
        result.check(
            not bad, f"{len(pages)} pages render without Redis" + (f": {bad}" if bad else "")
        )
        result.figures["pages without Redis"] = f"200 in at most {_ms(worst)}"

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
    pages = fetch()
    result.check(all(code == 200 for _, code, _ in pages), "the pages render with Redis back")
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
    timeout: float = 60.0,
) -> DrillResult:
    """Kill -9 the worker that holds a change's task, then reconcile: the record ends (never
    stays queued or running), says it was reconciled, and keeps the host's state read back.

    The worker is killed while the task is delivered and unacked and the change waits for the
    VM's lock, held by the drill as another running change would hold it: libvirt applies a
    pin in milliseconds, too fast to kill a change while it is ``running``. The record is then
    ``queued`` with its task gone with the worker; :func:`reconcile_stale_changes`, with
    *queued_older_than_s* as its queued threshold (``NUMAPORTAL_CHANGE_QUEUED_TIMEOUT``), ends
    it. *worker* must be the only worker of the drill's queue. The reconciliation ends every
    change queued longer than *queued_older_than_s*, not only the drill's: a drill for a test's
    database, not for a running portal's."""
    result = DrillResult("worker-killed")
    cpuset = str(_host_cpus(vm)[1])
    holder = change_lock(Change(host=vm.host, vm=vm))
    if not holder.acquire(blocking=False, token=HOLDER):
        result.check(False, f"the lock of {vm.name} is held: another change is running")
        return result
    try:
        result.did(f"took the lock of {vm.name} as a running change would")
        change = _pin_request(vm, actor, cpuset, "drill: worker killed", uuid_module.uuid4())
        result.did(f"requested emulatorpin {cpuset} (live) of {vm.name}: record {change.pk}")
        deadline = time.monotonic() + timeout
        while not _delivered(change) and time.monotonic() < deadline:
            time.sleep(0.05)
        change.refresh_from_db()
        if not result.check(
            _delivered(change) and change.status == Status.QUEUED,
            f"the worker took the task and waits for the lock (record {change.status})",
        ):
            return result
        worker.kill()
        killed = time.monotonic()
        result.did("killed the worker with SIGKILL")
    finally:
        holder.release()
    change.refresh_from_db()
    result.saw(f"record {change.status} after the kill (the task died unacked with the worker)")

    while True:
        reconcile_stale_changes(queued_older_than_s=queued_older_than_s)
        change.refresh_from_db()
        if change.status in ENDED or time.monotonic() > killed + timeout:
            break
        time.sleep(0.2)
    took = time.monotonic() - killed
    result.saw(f"record {change.status} {took:.1f} s after the kill: {change.error!r}")
    result.check(
        change.status == Status.FAILED and change.error == LOST,
        "the record ended failed, saying it was reconciled with the host's state read back",
    )
    result.check(
        took <= queued_older_than_s + 5,
        f"within the queued threshold ({queued_older_than_s:g} s) and 5 s",
    )
    with vm_domain(change, readonly=True) as dom:
        pin = snapshot_dict(dom)["emulatorpin_live"]
    kept = (change.after or {}).get("emulatorpin_live")
    result.saw(f"host's emulator pin {pin!r}; the record's state after {kept!r}")
    result.check(
        kept == pin and pin != cpuset,
        "the record's state after is the host's, which the killed change never touched",
    )
    result.figures["kill to ended record"] = (
        f"{took:.1f} s (queued threshold {queued_older_than_s:g} s)"
    )
    return result
