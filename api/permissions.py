"""The portal's roles (:mod:`numaportal.roles`) for the API: the same permission names as the
pages. A token authenticates its user and nothing more, so a token never grants more than its
user has (an inactive user's token is refused by knox).

A view names what reading it needs (``read_permission``) and what its writes need
(``write_permission``: one permission, or one per action such as ``{"create": ADD_HOST}``;
``None`` or an action not named: superusers only). Without a login: 401; signed in without the
permission: 403, the same rule as the pages (:mod:`web.access`), before the object is looked up.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

from numaportal import roles

__all__ = ["Roles"]


class Roles(BasePermission):
    """``read_permission`` for GET/HEAD/OPTIONS, ``write_permission`` for the rest."""

    message = "your role does not allow this"

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if request.method in SAFE_METHODS:
            needed = getattr(view, "read_permission", roles.VIEW_HOST)
        else:
            needed = getattr(view, "write_permission", None)
            if isinstance(needed, dict):
                needed = needed.get(getattr(view, "action", None))
            if needed is None:
                return bool(user.is_superuser)
        return bool(user.has_perm(needed))
