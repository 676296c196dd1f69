"""The single entry point for every mutation of a VM: :func:`request_change`.

Forms, the scheduler and (later) the API all call it. It enforces the role (``changes.add_change``,
the "operator" group), validates against the stored topology
(:mod:`changes.kinds.validation`), writes the audit record (status ``queued``) and enqueues
``changes.tasks.apply_change`` once the transaction commits, with the record's id as the Celery
task id.
"""

from __future__ import annotations

import logging
import uuid as uuid_module
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError

from changes.kinds.validation import effective_scope, validate_change
from changes.models import Change
from changes.recording import SCHEDULER_ACTOR, reason_errors, record_change
from vms.models import VirtualMachine

__all__ = ["SCHEDULER_ACTOR", "request_change"]

log = logging.getLogger(__name__)

ADD_CHANGE_PERMISSION = "changes.add_change"


def request_change(
    *,
    actor: Any,
    target: VirtualMachine,
    kind: str,
    params: dict[str, Any],
    scope: str = "live+config",
    reason: str,
    group_id: uuid_module.UUID | str | None = None,
) -> Change:
    """Validate, record (status ``queued``) and enqueue one change; the record.

    *actor*: a user, or None for the scheduler (recorded as "scheduler"). A user without
    ``changes.add_change`` gets :class:`~django.core.exceptions.PermissionDenied`. Invalid
    parameters, scope or a blank *reason* raise
    :class:`~django.core.exceptions.ValidationError` keyed by form field. *group_id* ties
    together the changes of one request or one balancing plan (a new one when None).
    The task goes to the host's ``worker_queue`` when it has one.
    """
    if actor is not None:
        if not getattr(actor, "is_authenticated", False) or not actor.is_active:
            raise PermissionDenied("log in to request changes")
        if not actor.has_perm(ADD_CHANGE_PERMISSION):
            raise PermissionDenied(
                f"{actor.get_username()} may not change VMs (operator role required)"
            )
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
