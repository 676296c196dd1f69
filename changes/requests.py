"""Every way to ask for a change: :func:`request_change` (one VM) and
:func:`request_numa_balancing` (a host's kernel setting).

Forms, the scheduler and (later) the API all call these. Each enforces its role itself (not
only the views do), validates through the kind's own rules (:mod:`changes.kinds`) and hands the
record to :func:`changes.recording.record_change`: written ``queued``, its worker enqueued once
the transaction commits, with the record's id as the Celery task id, to the central workers.
A balancing plan's moves are recorded by
:mod:`balancing.apply`, which approves them as a whole.
"""

from __future__ import annotations

import logging
import uuid as uuid_module
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from changes.kinds import numa_balancing, vm_flags
from changes.kinds.base import Requested
from changes.kinds.facts import HostFacts
from changes.kinds.fields import Errors
from changes.kinds.validation import effective_scope, validate_change
from changes.models import Change
from changes.recording import SCHEDULER_ACTOR, reason_errors, record_change, record_portal_change
from hosts.models import Host
from numaportal.roles import ADD_CHANGE
from numaportal.virt.scope import Scope
from vms.models import VirtualMachine

__all__ = ["SCHEDULER_ACTOR", "request_change", "request_numa_balancing", "set_vm_flags"]

log = logging.getLogger(__name__)


def _require_operator(actor: Any) -> None:
    """*actor* None is the scheduler; a user needs ``changes.add_change``."""
    if actor is not None:
        if not getattr(actor, "is_authenticated", False) or not actor.is_active:
            raise PermissionDenied("log in to request changes")
        if not actor.has_perm(ADD_CHANGE):
            raise PermissionDenied(
                f"{actor.get_username()} may not change VMs (operator role required)"
            )


def request_change(
    *,
    actor: Any,
    target: VirtualMachine,
    kind: str,
    params: dict[str, Any],
    scope: str = Scope.BOTH,
    reason: str,
    group_id: uuid_module.UUID | str | None = None,
) -> Change:
    """Validate, record (status ``queued``) and enqueue one change of a VM; the record.

    *actor*: a user, or None for the scheduler (recorded as "scheduler"). A user without
    ``changes.add_change`` (the "operator" group) gets
    :class:`~django.core.exceptions.PermissionDenied`. Invalid parameters, scope or a blank
    *reason* raise :class:`~django.core.exceptions.ValidationError` keyed by form field.
    *group_id* ties together the changes of one request or one balancing plan (a new one when
    None).
    """
    _require_operator(actor)
    if not isinstance(target, VirtualMachine):
        raise ValidationError(f"a change needs a VM as its target, not {target!r}")
    errors = reason_errors(reason)
    try:
        normalised = validate_change(target, kind, params, scope)
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors}
    if errors:
        raise ValidationError(errors)

    return record_change(
        actor=actor,
        host=target.host,
        vm=target,
        target_name=target.name,
        kind=kind,
        params=normalised,
        scope=effective_scope(kind, scope),
        reason=reason,
        group_id=group_id,
    )


def request_numa_balancing(host: Host, value: int, reason: str, actor: Any) -> Change:
    """Validate, record (status ``queued``) and enqueue a switch of *host*'s numa_balancing.

    *actor* must be an active superuser, else :class:`PermissionDenied`. A removed host, a
    host without an on-host worker, a value other than 0 or 1 and a blank *reason* raise
    :class:`ValidationError` keyed by field (``host``, ``worker_queue``, ``value``,
    ``reason``). The task goes to the central workers with the record's id as task id; they ask
    the host's own worker to read and write the file (:mod:`hosts.onhost`).
    """
    if not numa_balancing.can_switch(actor):
        who = actor.get_username() if getattr(actor, "is_authenticated", False) else "anonymous"
        raise PermissionDenied(
            f"{who} may not switch numa_balancing: it changes the whole host, admins only "
            "(superuser)"
        )
    if not isinstance(host, Host):
        raise ValidationError(f"numa_balancing is a setting of a host, not of {host!r}")
    kind = numa_balancing.KIND
    scope = kind.effective_scope(Scope.LIVE)
    errors = Errors()
    for field, messages in reason_errors(reason).items():
        for message in messages:
            errors.add(field, message)
    asked = Requested(HostFacts.from_host(host), None, {"value": value}, scope)
    params = kind.validate(asked, errors)
    errors.raise_if_any()
    return record_change(
        actor=actor,
        host=host,
        vm=None,
        target_name=host.name,
        kind=kind.name,
        params=params,
        scope=scope,
        reason=reason,
    )


def set_vm_flags(
    *, actor: Any, vm: VirtualMachine, values: dict[str, Any], reason: str
) -> Change | None:
    """Save *vm*'s balancing flags (``balancing_locked``, ``dedicated``) and their ``vm_flags``
    record, in one transaction; the record, or None when nothing changed (nothing saved).

    Operators only (``changes.add_change``, :class:`PermissionDenied` otherwise); a blank
    *reason* raises :class:`ValidationError` ``{"reason": [...]}`` and saves nothing.
    """
    _require_operator(actor)
    with transaction.atomic():
        # From the row, not *vm*: a bound ModelForm has already set the new values on it.
        before = (
            VirtualMachine.objects.select_for_update()
            .filter(pk=vm.pk)
            .values(*vm_flags.FIELDS)
            .get()
        )
        after = {name: bool(values.get(name, before[name])) for name in vm_flags.FIELDS}
        change = record_portal_change(
            actor=actor,
            kind=vm_flags.KIND.name,
            host=vm.host,
            vm=vm,
            target_name=vm.name,
            before=before,
            after=after,
            reason=reason,
        )
        if change is not None:
            for name, value in after.items():
                setattr(vm, name, value)
            vm.save(update_fields=[name for name in vm_flags.FIELDS if before[name] != after[name]])
    return change
