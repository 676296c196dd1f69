"""The worker-killed drills: the worker holding a change's task is killed with SIGKILL, while
the change waits for the VM's lock (``queued``) or while it runs (``running``)."""

from __future__ import annotations

import time
import uuid as uuid_module
from typing import Any

from changes.kinds.base import snapshot_dict, vm_domain
from changes.locks import change_lock
from changes.models import Change
from changes.reconcile import INTERRUPTED, LOST, reconcile_stale_changes
from numaportal.celery import app
from vms.models import VirtualMachine
from web.drills.base import (
    ENDED,
    DaemonControl,
    DrillResult,
    Status,
    WorkerControl,
    host_cpus,
    pin_request,
)

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
    cpuset = str(host_cpus(vm)[1])
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
        change = pin_request(vm, actor, cpuset, "drill: worker killed", group)
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
        change = pin_request(vm, actor, cpuset, "drill: worker killed", group, scope)
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
