"""How far a long change has got while it runs: ``Change.progress``, and the thread that writes it.

A memory move (:mod:`changes.kinds.memory_move`) blocks its worker in one call (a live
numatune through libvirt, or page migration on the host's own worker) for as long as the kernel
takes to move the pages. Around that call a :class:`ProgressRecorder` writes what it measures:

- at once, ``0`` of the MiB to move (its own memory outside the target cells, from the state
  before) at 0 s;
- while the call runs, every ``interval`` seconds, one reading (the VM's memory per cell, read
  on the host as for the state before and after) in a thread of its own;
- when the call has returned, one last reading: what the move achieved, in the time it took.

Each write is one ``UPDATE`` of ``progress`` alone, and only while the record is ``running``, so
it never overwrites what the executor writes (status, before, after, outcome) and never lands
on a finished record. The thread is stopped and joined when the call ends, however it ends
(returns, raises, the task's soft time limit): a reading waits a bounded time for its answer,
so the join is bounded too, and the thread closes its own database connection before it ends.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from django.db import connections

from changes.models import Change

__all__ = [
    "Progress",
    "ProgressRecorder",
    "RunningMove",
    "progress_of",
    "running_move",
    "write_progress",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """*moved_mib* of *total_mib* moved after *elapsed_s* seconds (what ``progress`` holds)."""

    moved_mib: float
    total_mib: float
    elapsed_s: float
    #: False: nothing is read while the move runs (page migration occupies the host's worker),
    #: only its start and its end are.
    readings: bool = True

    @classmethod
    def measured(
        cls, moved_mib: float, total_mib: float, elapsed_s: float, *, readings: bool = True
    ) -> Progress:
        """Clamped to 0..total: memory the VM allocates meanwhile, or frees, is no move."""
        total = max(0.0, float(total_mib))
        moved = min(total, max(0.0, float(moved_mib)))
        elapsed = max(0.0, float(elapsed_s))
        return cls(round(moved, 1), round(total, 1), round(elapsed, 1), readings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "moved_mib": self.moved_mib,
            "total_mib": self.total_mib,
            "elapsed_s": self.elapsed_s,
            "readings": self.readings,
        }

    @property
    def percent(self) -> int:
        """Whole per cent of the MiB shown (100 when there was nothing to move)."""
        moved, total = round(self.moved_mib), round(self.total_mib)
        return 100 if total <= 0 else min(100, math.floor(100 * moved / total))

    @property
    def text(self) -> str:
        """``412 of 1,024 MiB moved (40 %), 3.1 s``."""
        return (
            f"{round(self.moved_mib):,} of {round(self.total_mib):,} MiB moved "
            f"({self.percent} %), {self.elapsed_s:.1f} s"
        )


def progress_of(value: Any) -> Progress | None:
    """A record's ``progress`` as a :class:`Progress`; None when there is none (yet) or it is
    not what :func:`write_progress` writes."""
    if not isinstance(value, Mapping):
        return None
    numbers = [value.get(key) for key in ("moved_mib", "total_mib", "elapsed_s")]
    if not all(
        isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n) for n in numbers
    ):
        return None
    return Progress.measured(*numbers, readings=value.get("readings") is not False)


@dataclass(frozen=True)
class RunningMove:
    """What the change page shows of a memory move while it runs."""

    #: None until the worker has read the state before and started the move.
    progress: Progress | None
    #: What happens before the first figure, or why the figure will not move before the end.
    note: str


def running_move(change: Change) -> RunningMove | None:
    """The progress of *change* for its page while it is a running memory move; None else."""
    if change.kind != Change.Kind.MEMORY_MOVE or change.status != Change.Status.RUNNING:
        return None
    progress = progress_of(change.progress)
    if progress is None:
        note = "reading its memory per cell before the move"
    elif not progress.readings:
        note = (
            "page migration occupies the host's own worker, which reads nothing more until it "
            "ends: the next figure is the end"
        )
    else:
        note = ""
    return RunningMove(progress, note)


def write_progress(change_pk: Any, progress: Progress) -> bool:
    """One UPDATE of ``progress`` alone, while the record is running; False when it is not."""
    done = Change.objects.filter(pk=change_pk, status=Change.Status.RUNNING).update(
        progress=progress.as_dict()
    )
    return bool(done)


class ProgressRecorder:
    """``with ProgressRecorder(change.pk, total, measure, interval=2):`` around a blocking call.

    *measure()* returns the MiB moved so far (a reading on the host, bounded in time); it may
    raise: a reading that fails or times out is logged and skipped, never the move's failure.
    With ``readings=False`` no thread is started (the start and :meth:`finish` only): for a move
    that itself occupies the only worker that could answer a reading.
    """

    def __init__(
        self,
        change_pk: Any,
        total_mib: float,
        measure: Callable[[], float],
        *,
        interval: float,
        readings: bool = True,
    ) -> None:
        self.change_pk = change_pk
        self.total_mib = total_mib
        self.measure = measure
        self.interval = max(0.05, float(interval))
        self.readings = readings
        #: Readings the thread wrote, and readings that failed (for tests and logs).
        self.written = 0
        self.failed = 0
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def __enter__(self) -> ProgressRecorder:
        self._started = time.monotonic()
        write_progress(self.change_pk, self._progress(0.0, 0.0))
        if self.readings:
            self.thread = threading.Thread(
                target=self._run, name=f"change-progress-{self.change_pk}", daemon=True
            )
            self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self.thread is not None:
            # Bounded: the thread looks at the event between readings, and a reading waits a
            # bounded time for its answer.
            self.thread.join()

    def finish(self, elapsed_s: float) -> Progress | None:
        """One last reading once the call has returned, written with the call's duration; None
        when it could not be read (the state after says what happened) or the record is no
        longer running."""
        try:
            moved = self.measure()
        except Exception as exc:
            log.warning("change %s: the last progress reading failed: %s", self.change_pk, exc)
            return None
        progress = self._progress(moved, elapsed_s)
        return progress if write_progress(self.change_pk, progress) else None

    def _progress(self, moved_mib: float, elapsed_s: float) -> Progress:
        return Progress.measured(moved_mib, self.total_mib, elapsed_s, readings=self.readings)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._tick()
        finally:
            # This thread's own connections (Django's are per thread): never left open.
            connections.close_all()

    def _tick(self) -> None:
        try:
            moved = self.measure()
        except Exception as exc:
            self.failed += 1
            log.warning("change %s: a progress reading failed: %s", self.change_pk, exc)
            return
        if self._stop.is_set():
            return  # the call has ended meanwhile: finish() writes what it achieved
        progress = self._progress(moved, self.elapsed)
        try:
            if write_progress(self.change_pk, progress):
                self.written += 1
        except Exception:
            log.exception("change %s: writing its progress failed", self.change_pk)
