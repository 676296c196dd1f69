"""The worker side of a memory move's progress (changes.progress, changes.kinds.memory_move):
the recorder thread reading a real process's memory per cell through a real on-host worker (a
``celery worker`` process of its own, no database: tests/onhost_worker.py), what it writes and
what it never overwrites, and that no thread is left once the move has ended, failed or hit its
time limit; then whole memory moves through the executor on libvirt's test driver.

The "VM" is a child Python process of this test: the probe root's pid file names it, and the
probe root's ``proc`` is this machine's ``/proc``, so its ``numa_maps`` are read for real. This
machine has one NUMA node, so nothing here is moved by the kernel. Memory counts as moved when
it has left the cells outside the target; the only way for it to leave node 0 here is to be
freed, which is what the child does on request (48 MiB of its own): the recorder's arithmetic,
its timing and its thread are real, the move is not. The real move is the NUMA lab's
(tests/numalab/test_memory_move_numalab.py).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from changes import executor
from changes.kinds.memory_move import MoveHandle, progress_recorder
from changes.models import Change
from changes.progress import Progress, write_progress
from changes.requests import request_change
from hosts.onhost import OnHostWorker
from numaportal.virt.domains import lookup_domain
from numaportal.virt.errors import VirtError
from numaportal.virt.numatune import set_numatune
from numaportal.virt.scope import Scope
from tests.conftest import new_queue
from tests.onhost_worker import on_host_worker

pytestmark = [pytest.mark.web, pytest.mark.django_db(transaction=True)]

HOST = "hv-progress"
TEST_URI = "test:///default"
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test driver's running domain "test"
FREED_MIB = 48
INTERVAL = 0.2
WAIT = 30.0

CHILD = f"""
import sys
block = bytearray({FREED_MIB} << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
print("ready", flush=True)
sys.stdin.readline()
del block
print("freed", flush=True)
sys.stdin.readline()
"""


def progress_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("change-progress-")]


@pytest.fixture(scope="module")
def probe_root(tmp_path_factory) -> Path:
    """This machine's /proc and /sys under a root of its own, whose pid files the tests write."""
    root = tmp_path_factory.mktemp("probe-root")
    (root / "proc").symlink_to("/proc")
    (root / "sys").symlink_to("/sys")
    (root / "run/libvirt/qemu").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def on_host_queue(probe_root) -> Iterator[str]:
    """A real on-host worker of HOST (its own process, no database) reading *probe_root*."""
    queue = new_queue()
    with on_host_worker(queue, HOST, probe_root=probe_root):
        yield queue


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[str]

    def free(self) -> None:
        """Free its 48 MiB block (back to the kernel: a block that large is its own mmap)."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "freed"


def start_child(probe_root: Path, name: str) -> Child:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout and proc.stdout.readline().strip() == "ready"
    (probe_root / "run/libvirt/qemu" / f"{name}.pid").write_text(f"{proc.pid}\n")
    return Child(name, proc)


@pytest.fixture
def child(probe_root) -> Iterator[Child]:
    """A running "VM": a child process holding 48 MiB of its own, named by a pid file."""
    made = start_child(probe_root, f"vm-{uuid.uuid4().hex[:8]}")
    yield made
    made.proc.kill()
    made.proc.wait()
    (probe_root / "run/libvirt/qemu" / f"{made.name}.pid").unlink()


@pytest.fixture
def host(host_factory, on_host_queue):
    return host_factory(HOST, worker_queue=on_host_queue)


def running_move(host, vm_factory, name: str, before: dict) -> Change:
    vm = vm_factory(host, name)
    return Change.objects.create(
        actor_name="ops",
        host=host,
        vm=vm,
        target_name=name,
        kind="memory_move",
        params={"cells": "1", "method": "numatune"},
        scope="live",
        reason="progress test",
        status="running",
        started_at=timezone.now(),
        before=before,
    )


def memory_mib(worker: OnHostWorker, name: str) -> dict[str, float]:
    """What the state before holds (memory_move's snapshot): own MiB per cell."""
    return {str(c): round(m.own, 2) for c, m in worker.vm_memory(name).cells.items()}


def progress(change: Change) -> dict | None:
    return Change.objects.values_list("progress", flat=True).get(pk=change.pk)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT:g} s: {what}"
        time.sleep(0.02)


def test_the_recorder_reads_the_vm_through_its_on_host_worker(
    host, vm_factory, child, settings
) -> None:
    settings.NUMAPORTAL_MEMORY_MOVE_PROGRESS_S = INTERVAL
    worker = OnHostWorker(HOST, host.worker_queue)
    before = {"memory_mib": memory_mib(worker, child.name)}
    # All of it is on node 0 (this machine's only node), none on the target cell 1.
    total = sum(before["memory_mib"].values())
    assert set(before["memory_mib"]) == {"0"} and total >= FREED_MIB
    change = running_move(host, vm_factory, child.name, before)
    recorder = progress_recorder(
        MoveHandle(None, worker, child.name), change, frozenset({1}), before
    )
    seen: list[dict] = []

    def look() -> dict | None:
        now = progress(change)
        if now is not None and now not in seen:
            seen.append(now)
        return now

    started = time.monotonic()
    with recorder:  # the blocking move's stand-in: the child frees its block after 2 readings
        assert recorder.thread is not None and recorder.thread.is_alive()
        wait_until(lambda: look() and recorder.written >= 2, "two readings written")
        child.free()
        wait_until(lambda: look()["moved_mib"] >= FREED_MIB - 4, "the freed block counted")
    seconds = time.monotonic() - started

    assert not recorder.thread.is_alive() and progress_threads() == []
    assert recorder.failed == 0
    assert seen[0] == {"moved_mib": 0.0, "total_mib": round(total, 1), "elapsed_s": 0.0,
                       "readings": True}  # fmt: skip
    readings = seen[1:]
    assert readings and all(p["total_mib"] == round(total, 1) for p in readings)
    # Before the block was freed nothing left node 0 (a Python process's own small churn aside).
    assert readings[0]["moved_mib"] <= 2.0, seen
    assert FREED_MIB - 4 <= readings[-1]["moved_mib"] <= FREED_MIB + 4, seen
    elapsed = [p["elapsed_s"] for p in seen]
    assert elapsed == sorted(elapsed) and 0 < elapsed[-1] <= seconds + 0.1, seen
    # The last reading, once the move has returned, with the move's own duration.
    final = recorder.finish(seconds)
    print(f"recorded {seen}, then {final}")
    assert final is not None and final.elapsed_s == round(seconds, 1)
    assert progress(change) == final.as_dict()
    assert FREED_MIB - 4 <= final.moved_mib <= FREED_MIB + 4


@pytest.mark.parametrize(
    "failure",
    [
        VirtError("Timed out during operation: cannot acquire state change lock"),
        SoftTimeLimitExceeded("SoftTimeLimitExceeded()"),
    ],
    ids=["libvirt-error", "soft-time-limit"],
)
def test_the_thread_stops_when_the_move_fails_or_times_out(
    host, vm_factory, child, settings, probe_root, failure
) -> None:
    """Read directly this time (a worker that runs on the host itself: NUMAPORTAL_ON_HOST)."""
    settings.NUMAPORTAL_MEMORY_MOVE_PROGRESS_S = INTERVAL
    settings.NUMAPORTAL_ON_HOST = HOST
    settings.NUMAPORTAL_PROBE_ROOT = str(probe_root)
    worker = OnHostWorker(HOST, host.worker_queue)
    assert worker.is_here
    before = {"memory_mib": memory_mib(worker, child.name)}
    change = running_move(host, vm_factory, child.name, before)
    recorder = progress_recorder(
        MoveHandle(None, worker, child.name), change, frozenset({1}), before
    )
    with pytest.raises(type(failure)), recorder:
        wait_until(lambda: recorder.written >= 1, "a reading written")
        raise failure
    assert recorder.thread is not None and not recorder.thread.is_alive()
    assert progress_threads() == []
    written = recorder.written
    time.sleep(3 * INTERVAL)
    assert recorder.written == written  # nothing more after the move ended


def test_it_never_overwrites_the_record_and_never_writes_a_finished_one(
    host, vm_factory, child, settings, probe_root
) -> None:
    settings.NUMAPORTAL_ON_HOST = HOST
    settings.NUMAPORTAL_PROBE_ROOT = str(probe_root)
    settings.NUMAPORTAL_MEMORY_MOVE_PROGRESS_S = INTERVAL
    worker = OnHostWorker(HOST, host.worker_queue)
    before = {"memory_mib": memory_mib(worker, child.name)}
    change = running_move(host, vm_factory, child.name, {"memory_mib": {}})
    recorder = progress_recorder(
        MoveHandle(None, worker, child.name), change, frozenset({1}), before
    )
    with recorder:
        # What the executor writes meanwhile stays as it wrote it.
        Change.objects.filter(pk=change.pk).update(before=before)
        written = recorder.written
        wait_until(lambda: recorder.written >= written + 2, "two more readings written")
        # The record ends while the move still runs (the reconciler, say): no more writes.
        executor.finish(change, "failed", from_statuses=["running"], error="interrupted")
        last = progress(change)
        time.sleep(3 * INTERVAL)
    assert progress_threads() == []
    change.refresh_from_db()
    assert change.before == before and change.status == "failed"
    assert change.error == "interrupted"
    assert change.progress == last
    assert recorder.finish(1.0) is None and progress(change) == last  # refused: not running
    assert not write_progress(change.pk, Progress.measured(1.0, 1.0, 1.0))


def test_readings_that_fail_are_skipped_and_the_thread_still_ends(
    host, vm_factory, settings, probe_root
) -> None:
    settings.NUMAPORTAL_ON_HOST = HOST
    settings.NUMAPORTAL_PROBE_ROOT = str(probe_root)
    settings.NUMAPORTAL_MEMORY_MOVE_PROGRESS_S = INTERVAL
    worker = OnHostWorker(HOST, host.worker_queue)
    change = running_move(host, vm_factory, "gone", {"memory_mib": {"0": 100.0}})
    recorder = progress_recorder(MoveHandle(None, worker, "gone"), change, frozenset({1}), {
        "memory_mib": {"0": 100.0}})  # fmt: skip
    with recorder:  # no pid file: every reading fails ("no such file")
        wait_until(lambda: recorder.failed >= 2, "two failed readings")
    assert progress_threads() == []
    assert recorder.written == 0
    assert progress(change) == {
        "moved_mib": 0.0,
        "total_mib": 100.0,
        "elapsed_s": 0.0,
        "readings": True,
    }
    assert recorder.finish(1.0) is None  # the last reading fails too: the start stays


# --- whole memory moves through the executor, on libvirt's test driver ------------------------


@pytest.fixture
def test_driver(probe_root) -> Iterator[libvirt.virConnect]:
    """A connection that keeps the test driver's state for the test (its domain ``test``),
    and a child process as that domain's QEMU."""
    gc.collect()
    conn = libvirt.open(TEST_URI)
    made = start_child(probe_root, "test")
    yield conn
    made.proc.kill()
    made.proc.wait()
    (probe_root / "run/libvirt/qemu/test.pid").unlink()
    conn.close()
    gc.collect()


def move_memory(host, vm_factory, numatune_mode: str) -> Change:
    vm = vm_factory(host, "test", uuid=uuid.UUID(TEST_UUID), numatune_mode=numatune_mode)
    change = request_change(
        actor=None,
        target=vm,
        kind="memory_move",
        params={"cells": "0"},
        scope="live",
        reason="progress through the executor",
    )
    return executor.apply_change(str(change.id))


def test_a_move_through_libvirt_records_its_progress(
    host_factory, vm_factory, test_driver, on_host_queue, enqueued, settings
) -> None:
    settings.NUMAPORTAL_MEMORY_MOVE_PROGRESS_S = INTERVAL
    dom = lookup_domain(test_driver, "test")
    set_numatune(dom, "restrictive", {1}, Scope.LIVE)
    host = host_factory(HOST, uri=TEST_URI, worker_queue=on_host_queue)
    change = move_memory(host, vm_factory, "restrictive")
    assert change.status == "succeeded", change.error
    assert change.params == {"cells": "0", "method": "numatune"}
    # Its memory was on cell 0 already (this machine's only node): nothing to move, and the
    # record says so, from the start figure to the last one.
    assert change.progress["moved_mib"] == 0.0 and change.progress["total_mib"] == 0.0
    assert change.progress["readings"] is True
    assert change.outcome.startswith("moved 0.0 MiB to cell(s) 0 by a live numatune")
    assert progress_threads() == []


def test_page_migration_records_its_start_and_its_end(
    host_factory, vm_factory, test_driver, on_host_queue, enqueued, settings, ops_client
) -> None:
    host = host_factory(HOST, uri=TEST_URI, worker_queue=on_host_queue)
    change = move_memory(host, vm_factory, "")
    assert change.status == "succeeded", change.error
    assert change.params == {"cells": "0", "method": "migratepages"}
    assert change.progress["readings"] is False and change.progress["moved_mib"] == 0.0
    assert "by page migration of its QEMU on the host (migratepages)" in change.outcome
    assert progress_threads() == []
    page = ops_client.get(change.get_absolute_url()).content.decode()
    assert 'data-status="succeeded"' in page and 'id="change-progress"' not in page
    assert "moved 0.0 MiB to cell(s) 0 by page migration" in page
