"""Who may open a page: one decorator for every view.

Login first (anonymous → the login page), then the permission (logged in without it → 403).
The permission names are the constants of :mod:`numaportal.roles`; the services check the role
again, so a page is never the only guard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.decorators import permission_required as _django_permission_required

__all__ = ["requires"]

View = Callable[..., Any]


def requires(permission: str) -> Callable[[View], View]:
    """``@requires(roles.VIEW_HOST)``: login, then *permission* (403 without it)."""

    def decorate(view: View) -> View:
        return login_required(_django_permission_required(permission, raise_exception=True)(view))

    return decorate
