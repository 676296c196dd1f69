"""Switching the kernel's automatic NUMA balancing of a host, through the audit trail.

``/proc/sys/kernel/numa_balancing`` is a file on the host itself, so only the worker running ON
that host (its ``worker_queue``, started with ``NUMAPORTAL_ON_HOST=<name>``) can write it:
:func:`request_numa_balancing` validates, writes the :class:`~changes.models.Change` record
(kind ``numa_balancing``, no VM, target = the host) and enqueues ``changes.tasks.apply_change``
to that queue, exactly like a VM change; :func:`changes.services.apply_change` does the rest
(read before, write, read back, verify, record).

Values: 0 (off) and 1 (on) only. 2 (memory tiering, kernel 5.18+) is a different feature: it
promotes hot pages from slow memory tiers (CXL, PMEM) to DRAM and, on kernels before 6.x, turns
the ordinary balancing between DRAM nodes off; writing it on a kernel without tiering support
fails with EINVAL. It is shown when a host reports it, and switching such a host to 0 or 1 is
allowed, but the portal does not set it: that is a decision for ``sysctl`` on the host.

The setting is live only: it is lost at reboot unless it is also set in ``/etc/sysctl.d``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError

from changes.models import Change
from changes.recording import reason_errors, record_change
from hosts.models import Host

__all__ = [
    "ALLOWED_VALUES",
    "LIVE_ONLY",
    "VALUE_WORDS",
    "can_switch",
    "describe_value",
    "recent_changes",
    "request_numa_balancing",
    "unavailable_reason",
]

#: What the portal writes: 0 off, 1 on (see the module docstring for 2).
ALLOWED_VALUES = (0, 1)
VALUE_WORDS = {0: "off", 1: "on", 2: "memory tiering", 3: "on + memory tiering"}
LIVE_ONLY = "live only: lost at reboot unless set in /etc/sysctl.d"


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


def unavailable_reason(host: Host) -> str:
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


def request_numa_balancing(host: Host, value: int, reason: str, actor: Any) -> Change:
    """Validate, record (status ``queued``) and enqueue a switch of *host*'s numa_balancing.

    *actor* must be an active superuser, else :class:`PermissionDenied`. A removed host, a
    host without an on-host worker, a value other than 0 or 1 and a blank *reason* raise
    :class:`ValidationError` keyed by field (``host``, ``worker_queue``, ``value``,
    ``reason``). The task goes to ``host.worker_queue`` with the record's id as task id.
    """
    if not can_switch(actor):
        who = actor.get_username() if getattr(actor, "is_authenticated", False) else "anonymous"
        raise PermissionDenied(
            f"{who} may not switch numa_balancing: it changes the whole host, admins only "
            "(superuser)"
        )
    if not isinstance(host, Host):
        raise ValidationError(f"numa_balancing is a setting of a host, not of {host!r}")
    errors = reason_errors(reason)
    if host.is_removed:
        errors["host"] = [unavailable_reason(host)]
    elif not host.worker_queue:
        errors["worker_queue"] = [unavailable_reason(host)]
    value_problems = _value_errors(value)
    if value_problems:
        errors["value"] = value_problems
    if errors:
        raise ValidationError(errors)
    return record_change(
        actor=actor,
        host=host,
        vm=None,
        target_name=host.name,
        kind=Change.Kind.NUMA_BALANCING,
        params={"value": value},
        scope=Change.Scope.LIVE,
        reason=reason,
    )
