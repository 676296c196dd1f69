"""The host's balancing policy as a hot-add needs it, without ``changes`` importing ``balancing``.

``balancing`` sits above ``changes`` (the layer contract), yet a vCPU hot-added to a pinned VM
is placed by the host's balancing policy (:mod:`changes.kinds.hotadd`). So ``changes`` owns the
question and ``balancing`` answers it: ``balancing.apps.BalancingConfig.ready`` registers
:func:`balancing.inputs.hotadd_policy_for_host` here. Until something is registered (a process
without the balancing app, a test that clears it) every host has the defaults of a new policy,
:class:`~changes.kinds.hotadd.HotAddPolicy` ``()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from changes.kinds.hotadd import HotAddPolicy

__all__ = ["PolicyLookup", "policy_for", "register", "registered"]

#: host row -> its policy for hot-adds.
PolicyLookup = Callable[[Any], HotAddPolicy]

_lookup: PolicyLookup | None = None


def register(lookup: PolicyLookup | None) -> None:
    """Answer :func:`policy_for` with *lookup* from now on (None: the defaults again)."""
    global _lookup
    _lookup = lookup


def registered() -> PolicyLookup | None:
    return _lookup


def policy_for(host: Any) -> HotAddPolicy:
    """*host*'s policy for hot-adds: what balancing registered says, the defaults otherwise."""
    return HotAddPolicy() if _lookup is None else _lookup(host)
