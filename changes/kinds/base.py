"""The hooks every kind of change provides, and the defaults VM and host kinds share.

The worker (:mod:`changes.executor`) runs every kind the same way::

    with kind.session(change) as handle:            # a libvirt domain; the host's probe root
        before = kind.snapshot(handle)               # stored at once
        error, outcome = kind.apply(handle, change, before)
        after = kind.snapshot(handle)
        kind.keep(change, after)
        problems = kind.verify(change, after)        # "read back after the change: ..."
    finish(outcome=kind.outcome(...), diff=kind.diff(before, after))

and validation (:mod:`changes.kinds.validation`) asks :meth:`ChangeKind.validate` for the
normalised parameters, with each problem under its form field.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings

from changes.diff import failure_outcome, make_diff
from changes.kinds.facts import HostFacts, VmFacts
from changes.kinds.fields import Errors
from changes.kinds.hotadd import HostPins
from changes.kinds.words import word
from changes.models import Change
from hosts.onhost import OnHostWorker
from numaportal.virt import connection as virt_connection
from numaportal.virt import domains, snapshot
from numaportal.virt.topology import HostTopology

__all__ = [
    "HOOKS",
    "ChangeKind",
    "HostKind",
    "PortalKind",
    "Requested",
    "Snap",
    "Target",
    "VmKind",
    "snapshot_dict",
    "vm_domain",
]

Snap = dict[str, Any] | None

#: The methods every kind answers (the registry's test checks each kind has them all).
HOOKS = (
    "effective_scope",
    "scope_errors",
    "validate",
    "session",
    "snapshot",
    "apply",
    "keep",
    "verify",
    "unreadable_after",
    "outcome",
    "diff",
)


@dataclass(frozen=True)
class Requested:
    """A change as asked for, with what validation knows of its target (no libvirt)."""

    #: VmFacts for a VM kind, HostFacts for a host kind.
    facts: VmFacts | HostFacts
    topology: HostTopology | None
    params: Mapping[str, Any]
    #: The effective scope (``ChangeKind.effective_scope``) when it is a scope at all.
    scope: str
    #: The host's policy and stored pins, for a kind that says ``needs_host_pins`` (an empty
    #: host under the default policy otherwise).
    pins: HostPins = field(default_factory=HostPins)


class Target(enum.StrEnum):
    """What a change acts on: one VM (``Change.vm``) or its host as a whole (no VM)."""

    VM = "vm"
    HOST = "host"


class ChangeKind(ABC):
    """One kind of change. Subclass :class:`VmKind` or :class:`HostKind`."""

    #: The ``Change.Kind`` value this kind is registered under.
    name: ClassVar[str]
    target: ClassVar[Target]
    #: ``request_change`` takes it (an operator's change of one VM). A kind recorded by its
    #: own entry point (a plan's moves, a host setting) says False.
    requestable: ClassVar[bool] = True
    #: Validation needs the host's policy and the stored pins of its running VMs
    #: (``Requested.pins``; two queries, made only for such a kind of a running VM).
    needs_host_pins: ClassVar[bool] = False

    # --- scope --------------------------------------------------------------------------------

    def effective_scope(self, scope: str) -> str:
        """The scope stored for a request in *scope* (most kinds: the scope asked for)."""
        return scope

    def scope_errors(self, scope: str) -> list[str]:
        """Why this kind refuses *scope* (already made effective), beyond the shared rules."""
        return []

    # --- validation ---------------------------------------------------------------------------

    @abstractmethod
    def validate(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        """The normalised params; each problem added to *errors* under its form field.

        ``asked.scope`` is the effective scope; ``"scope" in errors`` when it was refused.
        """

    # --- the worker ---------------------------------------------------------------------------

    @abstractmethod
    def session(self, change: Change) -> AbstractContextManager[Any]:
        """Where the change is applied, for the length of the change (the handle)."""

    @abstractmethod
    def snapshot(self, handle: Any) -> dict[str, Any]:
        """The state the change is about, as JSON types; VirtError when it cannot be read."""

    @abstractmethod
    def apply(self, handle: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
        """Apply *change*: (the error, or "", and what happened in words).

        A VirtError that escapes means nothing was done beyond it: the worker records its
        message as the error.
        """

    def keep(self, change: Change, after: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Store what the read-back says where the portal keeps it beyond the record (a host
        setting on the host row; VM kinds: nothing here, the executor refreshes the VM's rows
        from the after snapshot once the lock is released)."""

    @abstractmethod
    def verify(self, change: Change, after: dict[str, Any]) -> list[str]:
        """Where the state after differs from the request; empty when it is as asked."""

    def unreadable_after(self, exc: Exception) -> str:
        """The error when the state after could not be read."""
        return f"the state after the change could not be read: {exc}"

    @abstractmethod
    def outcome(self, change: Change, error: str, outcome: str, before: Snap, after: Snap) -> str:
        """The record's ``outcome``: what really happened, from what apply said and the
        snapshots (either may be None when it was never read)."""

    @abstractmethod
    def diff(self, before: Snap, after: Snap) -> str:
        """The record's ``diff``; "" without both snapshots."""


# --- VM kinds: through libvirt ----------------------------------------------------------------


@contextmanager
def vm_domain(change: Change, *, readonly: bool = False) -> Iterator[Any]:
    """The change's VM as a libvirt domain, its connection closed afterwards."""
    with virt_connection.connect(
        change.host.uri, timeout=settings.NUMAPORTAL_LIBVIRT_TIMEOUT, readonly=readonly
    ) as conn:
        yield domains.lookup_domain(conn, str(change.vm.uuid))


def snapshot_dict(dom: Any) -> dict[str, Any]:
    """The domain's state for the record (persistent and live XML, parsed tuning, counts)."""
    return snapshot.snapshot(dom).as_dict()


class VmKind(ChangeKind):
    """A change of one VM through :mod:`numaportal.virt` (pinning, numatune, vcpus); before and
    after are :func:`snapshot_dict` of its domain."""

    target = Target.VM

    def session(self, change: Change) -> AbstractContextManager[Any]:
        return vm_domain(change)

    def snapshot(self, handle: Any) -> dict[str, Any]:
        return snapshot_dict(handle)

    def outcome(self, change: Change, error: str, outcome: str, before: Snap, after: Snap) -> str:
        return failure_outcome(outcome, before, after) if error else outcome

    def diff(self, before: Snap, after: Snap) -> str:
        return make_diff(before, after)


# --- host kinds: on the host's own worker ------------------------------------------------------


class HostKind(ChangeKind):
    """A setting of the host itself, read and written by the worker running ON it (its
    ``worker_queue``, ``NUMAPORTAL_ON_HOST``), asked over the broker by the central worker that
    runs the change; the handle is that :class:`hosts.onhost.OnHostWorker`."""

    target = Target.HOST
    requestable = False

    def session(self, change: Change) -> AbstractContextManager[Any]:
        return nullcontext(OnHostWorker(change.host.name, change.host.worker_queue))


# --- portal kinds: the portal's own settings, nothing on the host ------------------------------


class PortalKind(ChangeKind):
    """A setting the portal keeps for itself (a VM's balancing flags, a host's balancing
    policy): nothing on the host changes, so no worker runs it. The service that saves the
    setting writes the record at once, finished (:func:`changes.recording.record_portal_change`,
    in the same transaction), scope ``portal``, before and after being the setting's fields and
    the diff those that differ in words. The worker's hooks refuse: such a record is never
    queued."""

    requestable = False
    #: The record's outcome: what saving it did (and did not do).
    effect: ClassVar[str]

    def effective_scope(self, scope: str) -> str:
        return Change.Scope.PORTAL

    def validate(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        # The setting's own form and service validate it; the params are what changed.
        return dict(asked.params)

    def _not_a_worker_kind(self) -> RuntimeError:
        return RuntimeError(f"{self.name} is recorded by the portal when saved, never queued")

    def session(self, change: Change) -> AbstractContextManager[Any]:
        raise self._not_a_worker_kind()

    def snapshot(self, handle: Any) -> dict[str, Any]:
        raise self._not_a_worker_kind()

    def apply(self, handle: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
        raise self._not_a_worker_kind()

    def verify(self, change: Change, after: dict[str, Any]) -> list[str]:
        return []

    def outcome(self, change: Change, error: str, outcome: str, before: Snap, after: Snap) -> str:
        return self.effect

    def diff(self, before: Snap, after: Snap) -> str:
        """One line per field that differs: "dedicated: no -> yes"."""
        before, after = before or {}, after or {}
        return "\n".join(
            f"{key}: {word(before.get(key))} -> {word(after.get(key))}"
            for key in after
            if before.get(key) != after.get(key)
        )
