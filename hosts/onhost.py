"""Asking a host's own worker to read or write a file on that host: numa_balancing.

``/proc/sys/kernel/numa_balancing`` is on the host, and only a worker running there
(``NUMAPORTAL_ON_HOST=<name>``, queue ``host.<name>``) can touch it. That worker has no
database, so the change itself runs on a central worker (which holds the record, the lock and
the audit trail) and asks over the broker: :class:`OnHostWorker` sends
``hosts.tasks.numa_balancing`` to the host's queue and waits a bounded time
(``NUMAPORTAL_ON_HOST_WAIT``) for :func:`answer_numa_balancing`'s answer. The request expires
when the wait ends, so an on-host worker that comes back late discards it instead of acting
on a change already recorded as failed. Like nova-conductor's calls to nova-compute.

A process that itself runs on the host (its ``NUMAPORTAL_ON_HOST`` names the host) reads and
writes directly: there is nobody to ask.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings

from hosts.probing import check_on_host
from numaportal.virt import hostprobe
from numaportal.virt.errors import VirtError

__all__ = ["NoAnswer", "OnHostWorker", "answer_numa_balancing"]

TASK = "hosts.tasks.numa_balancing"


class NoAnswer(VirtError):
    """The host's own worker did not answer in time (not running, or busy): nothing was done."""


def answer_numa_balancing(host_name: str, worker_queue: str, value: int | None) -> dict[str, Any]:
    """On the host: write *value* (unless None), then read the file. ``{"numa_balancing": n}``,
    or ``{"error": message}`` with the probe's words (not on this host, EPERM, no such file)."""
    try:
        check_on_host(host_name, worker_queue)
        root = settings.NUMAPORTAL_PROBE_ROOT
        if value is not None:
            hostprobe.write_numa_balancing(value, root)
        return {"numa_balancing": hostprobe.read_numa_balancing(root)}
    except VirtError as exc:
        return {"error": str(exc)}


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

    def _numa_balancing(self, value: int | None) -> int:
        if self.is_here:
            answer = answer_numa_balancing(self.host_name, self.worker_queue, value)
        else:
            answer = self._ask(value)
        if "error" in answer:
            raise VirtError(str(answer["error"]))
        got = answer.get("numa_balancing")
        if isinstance(got, bool) or not isinstance(got, int):
            raise VirtError(f"the on-host worker of {self.host_name} answered {answer!r}")
        return got

    def _ask(self, value: int | None) -> dict[str, Any]:
        if not self.worker_queue:
            raise NoAnswer(f"host {self.host_name} has no on-host worker (worker_queue)")
        wait = settings.NUMAPORTAL_ON_HOST_WAIT
        result = current_app.send_task(
            TASK,
            args=[self.host_name, self.worker_queue, value],
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
                f"{self.worker_queue!r}) within {wait:g} s: nothing was "
                f"{'written' if value is not None else 'read'} (the request expires, so a late "
                "worker discards it). Is a worker "
                f"for queue {self.worker_queue!r} running on {self.host_name} with "
                f"NUMAPORTAL_ON_HOST={self.host_name}?"
            ) from None
        except Exception as exc:  # the task itself raised on the host
            raise VirtError(f"the on-host worker of {self.host_name} failed: {exc}") from None
        finally:
            result.forget()
        if not isinstance(answer, dict):
            raise VirtError(f"the on-host worker of {self.host_name} answered {answer!r}")
        return answer
