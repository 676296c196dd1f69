"""Words the kinds share when they say what happened (outcomes, read-back problems)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.scope import Scope
from vms.numa import guest_online_commands

__all__ = ["cpus_text", "online_commands", "scope_words", "word"]

_SCOPE_WORDS = {
    Scope.LIVE: "live",
    Scope.CONFIG: "in the config",
    Scope.BOTH: "live and in the config",
}


def word(value: Any) -> str:
    """A read-back value as text: "none" for nothing, yes/no for booleans."""
    if value is None or value == "" or value == {}:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def scope_words(scope: str) -> str:
    """ "live", "in the config", "live and in the config"."""
    return _SCOPE_WORDS[Scope(scope)]


def cpus_text(cpus: Iterable[int]) -> str:
    """ "vCPU 2" or "vCPUs 2-3"."""
    cpus = sorted(cpus)
    return f"vCPU{'s' if len(cpus) > 1 else ''} {format_cpuset(cpus)}"


def online_commands(cpus: Iterable[int], online: bool) -> str:
    """What to run in the guest by hand, as one line."""
    return "; ".join(guest_online_commands(cpus, online))
