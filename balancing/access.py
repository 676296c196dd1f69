"""Who may plan, approve and edit balancing: operators plan and approve (``changes.add_change``),
superusers edit policies. The views ask :func:`can_plan` / :func:`can_edit_policy` to show the
buttons; the request services call :func:`require_operator` again.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

from numaportal import roles

__all__ = ["PLAN_PERMISSION", "can_edit_policy", "can_plan", "require_operator"]

PLAN_PERMISSION = roles.ADD_CHANGE


def _active_user(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def can_plan(user: Any) -> bool:
    """Operators (``changes.add_change``) and superusers plan and approve."""
    return _active_user(user) and user.has_perm(PLAN_PERMISSION)


def can_edit_policy(user: Any) -> bool:
    """Admins only (superusers): a policy lets the scheduler move every VM of the host."""
    return _active_user(user) and user.is_superuser


def require_operator(actor: Any) -> None:
    """*actor* None is the scheduler; a user needs the operator role."""
    if actor is None:
        return
    if not _active_user(actor):
        raise PermissionDenied("log in to plan balancing")
    if not actor.has_perm(PLAN_PERMISSION):
        raise PermissionDenied(
            f"{actor.get_username()} may not plan or approve balancing (operator role required)"
        )
