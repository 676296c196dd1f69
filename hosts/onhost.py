"""Asking a host's own worker to do what only a process on that host can: numa_balancing, a
VM's memory per cell (its QEMU's numa_maps), page migration of a VM's QEMU (migratepages).

That worker (``NUMAPORTAL_ON_HOST=<name>``, queue ``host.<name>``) has no database, so the
change itself runs on a central worker (which holds the record, the lock and the audit trail)
and asks over the broker: :class:`OnHostWorker` sends one of the ``answer_*`` functions' tasks
(``hosts.tasks``) to the host's queue and waits a bounded time for its answer. The request
expires when the wait ends, so an on-host worker that comes back late discards it instead of
acting on a change already recorded as failed. Like nova-conductor's calls to nova-compute.

A process that itself runs on the host (its ``NUMAPORTAL_ON_HOST`` names the host) answers
directly: there is nobody to ask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import current_app
from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings

from hosts.probing import (
    MalformedSample,
    check_on_host,
    process_memory_from,
    process_memory_message,
)
from numaportal.virt import hostprobe, pagemigration
from numaportal.virt.errors import VirtError

__all__ = [
    "NoAnswer",
    "OnHostWorker",
    "answer_migrate_pages",
    "answer_numa_balancing",
    "answer_vm_memory",
]

NUMA_BALANCING_TASK = "hosts.tasks.numa_balancing"
VM_MEMORY_TASK = "hosts.tasks.vm_memory"
MIGRATE_PAGES_TASK = "hosts.tasks.migrate_pages"


class NoAnswer(VirtError):
    """The host's own worker did not answer in time (not running, or busy): nothing was done."""


def _answer(host_name: str, worker_queue: str, work: Callable[[str], dict[str, Any]]) -> dict:
    """On the host: *work(probe root)*, or ``{"error": message}`` in the probe's words (not on
    this host, EPERM, no such file, no such process)."""
    try:
        check_on_host(host_name, worker_queue)
        return work(settings.NUMAPORTAL_PROBE_ROOT)
    except VirtError as exc:
        return {"error": str(exc)}


def answer_numa_balancing(host_name: str, worker_queue: str, value: int | None) -> dict[str, Any]:
    """Write *value* (unless None), then read the file: ``{"numa_balancing": n}``."""

    def work(root: str) -> dict[str, Any]:
        if value is not None:
            hostprobe.write_numa_balancing(value, root)
        return {"numa_balancing": hostprobe.read_numa_balancing(root)}

    return _answer(host_name, worker_queue, work)


def answer_vm_memory(host_name: str, worker_queue: str, vm_name: str) -> dict[str, Any]:
    """The memory per cell of *vm_name*'s QEMU process (its numa_maps), as a message."""

    def work(root: str) -> dict[str, Any]:
        mem = hostprobe.read_numa_maps(hostprobe.qemu_pid(vm_name, root), root)
        return {"memory": process_memory_message(mem)}

    return _answer(host_name, worker_queue, work)


def answer_migrate_pages(
    host_name: str, worker_queue: str, vm_name: str, cells: list[int], timeout: float
) -> dict[str, Any]:
    """Move *vm_name*'s QEMU pages from every other node to *cells*: ``{"seconds": s}``."""

    def work(root: str) -> dict[str, Any]:
        pid = hostprobe.qemu_pid(vm_name, root)
        others = set(hostprobe.read_numastat(root)) - set(cells)
        seconds = pagemigration.migrate_pages(pid, others, cells, timeout=timeout)
        return {"seconds": seconds}

    return _answer(host_name, worker_queue, work)


class OnHostWorker:
    """The worker running ON *host_name*, reached through its queue (or directly, see above)."""

    def __init__(self, host_name: str, worker_queue: str) -> None:
        self.host_name = host_name
        self.worker_queue = worker_queue

    @property
    def is_here(self) -> bool:
        """This process runs on the host itself."""
        return self.host_name == settings.NUMAPORTAL_ON_HOST

    def read_numa_balancing(self) -> int:
        return self._numa_balancing(None)

    def write_numa_balancing(self, value: int) -> int:
        """Write, then the value read back."""
        return self._numa_balancing(value)

    def vm_memory(self, vm_name: str, *, wait: float | None = None) -> hostprobe.ProcessMemory:
        """*vm_name*'s memory per cell now, read on the host; waiting at most *wait* seconds
        for the answer (default ``NUMAPORTAL_ON_HOST_WAIT``; a progress reading waits less)."""
        if self.is_here:
            answer = answer_vm_memory(self.host_name, self.worker_queue, vm_name)
        else:
            wait = settings.NUMAPORTAL_ON_HOST_WAIT if wait is None else wait
            answer = self._ask(VM_MEMORY_TASK, [vm_name], wait)
        self._raise_for(answer)
        try:
            return process_memory_from(answer.get("memory"))
        except MalformedSample as exc:
            raise VirtError(f"the on-host worker of {self.host_name} answered: {exc}") from None

    def migrate_pages(self, vm_name: str, cells: list[int], timeout: float) -> float:
        """Page migration of *vm_name*'s QEMU onto *cells*; the seconds it took there."""
        if self.is_here:
            answer = answer_migrate_pages(
                self.host_name, self.worker_queue, vm_name, cells, timeout
            )
        else:
            # The wait covers the migration and the trip through the broker both ways.
            wait = timeout + settings.NUMAPORTAL_ON_HOST_WAIT
            answer = self._ask(MIGRATE_PAGES_TASK, [vm_name, cells, timeout], wait)
        self._raise_for(answer)
        seconds = answer.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise VirtError(f"the on-host worker of {self.host_name} answered {answer!r}")
        return float(seconds)

    def _numa_balancing(self, value: int | None) -> int:
        if self.is_here:
            answer = answer_numa_balancing(self.host_name, self.worker_queue, value)
        else:
            answer = self._ask(NUMA_BALANCING_TASK, [value], settings.NUMAPORTAL_ON_HOST_WAIT)
        self._raise_for(answer)
        got = answer.get("numa_balancing")
        if isinstance(got, bool) or not isinstance(got, int):
            raise VirtError(f"the on-host worker of {self.host_name} answered {answer!r}")
        return got

    def _raise_for(self, answer: dict[str, Any]) -> None:
        if "error" in answer:
            raise VirtError(str(answer["error"]))

    def _ask(self, task: str, args: list[Any], wait: float) -> dict[str, Any]:
        if not self.worker_queue:
            raise NoAnswer(f"host {self.host_name} has no on-host worker (worker_queue)")
        result = current_app.send_task(
            task,
            args=[self.host_name, self.worker_queue, *args],
            queue=self.worker_queue,
            expires=wait,
        )
        try:
            # A central worker waiting for an on-host one: another queue, another worker, so
            # this cannot wait for itself (Celery refuses such waits unless told).
            answer = result.get(timeout=wait, disable_sync_subtasks=False, propagate=True)
        except CeleryTimeout:
            raise NoAnswer(
                f"no answer from the on-host worker of {self.host_name} (queue "
                f"{self.worker_queue!r}) within {wait:g} s: nothing was confirmed (the "
                "request expires, so a late worker discards it). Is a worker for queue "
                f"{self.worker_queue!r} running on {self.host_name} with "
                f"NUMAPORTAL_ON_HOST={self.host_name}?"
            ) from None
        except Exception as exc:  # the task itself raised on the host
            raise VirtError(f"the on-host worker of {self.host_name} failed: {exc}") from None
        finally:
            result.forget()
        if not isinstance(answer, dict):
            raise VirtError(f"the on-host worker of {self.host_name} answered {answer!r}")
        return answer
