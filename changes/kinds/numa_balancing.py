"""``numa_balancing``: switch the kernel's automatic NUMA balancing of a host
(``/proc/sys/kernel/numa_balancing``), and what the host pages show about it.

The file is on the host itself, so only the worker running ON that host (its ``worker_queue``,
started with ``NUMAPORTAL_ON_HOST=<name>``) can write it; that worker has no database, so the
change runs on a central worker that asks it over the broker (:mod:`hosts.onhost`). The record
has no VM, its target is the host. :func:`changes.requests.request_numa_balancing` records it
(admins only); :mod:`changes.executor` reads before, writes, reads back and verifies like any
change. Before and after are ``{"numa_balancing": <value>}``.

Values: 0 (off) and 1 (on) only. 2 (memory tiering, kernel 5.18+) is a different feature: it
promotes hot pages from slow memory tiers (CXL, PMEM) to DRAM and, on kernels before 6.x, turns
the ordinary balancing between DRAM nodes off; writing it on a kernel without tiering support
fails with EINVAL. It is shown when a host reports it, and switching such a host to 0 or 1 is
allowed, but the portal does not set it: that is a decision for ``sysctl`` on the host.

The setting is live only: it is lost at reboot unless it is also set in ``/etc/sysctl.d``.
"""

from __future__ import annotations

from typing import Any

from changes.kinds.base import HostKind, Requested, Snap
from changes.kinds.facts import HostFacts
from changes.kinds.fields import Errors
from changes.kinds.words import word
from changes.models import Change
from hosts.models import Host
from hosts.onhost import OnHostWorker
from numaportal.virt.scope import Scope

__all__ = [
    "ALLOWED_VALUES",
    "KIND",
    "LIVE_ONLY",
    "NOT_PERSISTENT",
    "VALUE_WORDS",
    "can_switch",
    "describe_value",
    "recent_changes",
    "unavailable_reason",
]

#: What the portal writes: 0 off, 1 on (see the module docstring for 2).
ALLOWED_VALUES = (0, 1)
VALUE_WORDS = {0: "off", 1: "on", 2: "memory tiering", 3: "on + memory tiering"}
LIVE_ONLY = "live only: lost at reboot unless set in /etc/sysctl.d"
#: The kernel setting survives no reboot; every outcome says so.
NOT_PERSISTENT = "live; not persistent across reboot: lost at reboot unless set in /etc/sysctl.d"


# --- what the host pages show -----------------------------------------------------------------


def describe_value(value: int | None) -> str:
    """``1 (on)``; ``unknown`` for a value never read."""
    if value is None:
        return "unknown"
    return f"{value} ({VALUE_WORDS.get(value, 'unknown mode')})"


def can_switch(user: Any) -> bool:
    """Admins only (superusers): the setting changes the whole host, every VM on it."""
    return bool(
        user is not None
        and getattr(user, "is_authenticated", False)
        and user.is_active
        and user.is_superuser
    )


def unavailable_reason(host: Host | HostFacts) -> str:
    """Why this host's numa_balancing cannot be switched from the portal; "" when it can."""
    if host.is_removed:
        return f"host {host.name} was removed from the portal"
    if not host.worker_queue:
        return (
            f"numa_balancing is written by the worker on the host; host {host.name} has no "
            "on-host worker (worker_queue)"
        )
    return ""


def recent_changes(host: Host, limit: int = 5) -> list[Change]:
    """The host's last numa_balancing changes, newest first (for the host page)."""
    changes = Change.objects.filter(host=host, kind=Change.Kind.NUMA_BALANCING)
    return list(changes.order_by("-created_at")[:limit])


# --- the kind -----------------------------------------------------------------------------------


def _value_errors(value: Any) -> list[str]:
    # bool is an int subclass: True would silently mean 1; refuse it as a caller mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        return [f"numa_balancing must be 0 (off) or 1 (on), not {value!r}"]
    if value == 2:
        return [
            "2 (memory tiering) is not set from the portal: it is for hosts with slow memory "
            "tiers (CXL, PMEM) and needs kernel 5.18+; set it with sysctl on the host"
        ]
    if value not in ALLOWED_VALUES:
        return [f"numa_balancing must be 0 (off) or 1 (on), not {value!r}"]
    return []


def _words(before: int | None, after: int | None) -> str:
    return f"numa_balancing {word(before)} -> {word(after)}"


class NumaBalancing(HostKind):
    name = Change.Kind.NUMA_BALANCING

    def effective_scope(self, scope: str) -> str:
        """A kernel setting in /proc is live only, whatever was asked."""
        return Scope.LIVE

    def validate(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        """A host that is still in the portal, with an on-host worker; 0 or 1 (field
        ``value``). Errors under ``host``, ``worker_queue`` and ``value``."""
        host: HostFacts = asked.facts
        if host.is_removed:
            errors.add("host", unavailable_reason(host))
        elif not host.worker_queue:
            errors.add("worker_queue", unavailable_reason(host))
        value = asked.params.get("value")
        for problem in _value_errors(value):
            errors.add("value", problem)
        return {} if "value" in errors else {"value": value}

    def snapshot(self, handle: OnHostWorker) -> dict[str, Any]:
        return {"numa_balancing": handle.read_numa_balancing()}

    def apply(
        self, handle: OnHostWorker, change: Change, before: dict[str, Any]
    ) -> tuple[str, str]:
        # EPERM, no such file, not on the host, no answer: a VirtError, recorded as the error.
        handle.write_numa_balancing(change.params.get("value"))
        return "", ""

    def keep(self, change: Change, after: dict[str, Any]) -> None:
        """The host row holds the last value read."""
        Host.objects.filter(pk=change.host_id).update(numa_balancing=after["numa_balancing"])

    def verify(self, change: Change, after: dict[str, Any]) -> list[str]:
        got, wanted = after["numa_balancing"], change.params.get("value")
        return [] if got == wanted else [f"numa_balancing is {got}, not {wanted} as requested"]

    def unreadable_after(self, exc: Exception) -> str:
        return f"the value after the change could not be read: {exc}"

    def outcome(self, change: Change, error: str, outcome: str, before: Snap, after: Snap) -> str:
        host = change.host.name
        if before is None:  # NotOnThisHost, the file unreadable: nothing was written
            return "nothing was changed: no file was written"
        old = before["numa_balancing"]
        if after is None:
            return f"numa_balancing was {old} before; not read back after"
        got = after["numa_balancing"]
        if error and got == old:
            return f"nothing was changed on host {host}: numa_balancing is still {old}"
        nevertheless = "changed nevertheless: " if error else ""
        return f"{nevertheless}{_words(old, got)} on host {host} ({NOT_PERSISTENT})"

    def diff(self, before: Snap, after: Snap) -> str:
        if not before or not after:
            return ""
        return _words(before["numa_balancing"], after["numa_balancing"])


KIND = NumaBalancing()
