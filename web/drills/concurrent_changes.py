"""The concurrent-changes drill: many conflicting changes of one VM at once."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
import uuid as uuid_module
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection

from changes.kinds.base import snapshot_dict, vm_domain
from changes.models import Change
from vms.models import VirtualMachine
from web.drills.base import ENDED, DrillResult, Status, host_cpus, ms, pin_request, wait_ended


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
    cpus = host_cpus(vm)[:2]
    group = uuid_module.uuid4()
    barrier = threading.Barrier(submitters)
    errors: list[str] = []

    def submit(worker: int) -> list[Any]:
        ids = []
        try:
            barrier.wait()
            for i in range(worker, count, submitters):
                cpuset = str(cpus[i % len(cpus)])
                ids.append(pin_request(vm, actor, cpuset, f"drill: race {i}", group).pk)
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
            f"p50 {ms(statistics.median(durations))}, max {ms(max(durations))}"
        )
    else:
        result.check(False, "no change succeeded")
    result.figures[f"{count} changes"] = (
        f"{counts.get(Status.SUCCEEDED, 0)} succeeded, {counts.get(Status.FAILED, 0)} failed, "
        f"all ended in {elapsed:.1f} s"
    )
    return result
