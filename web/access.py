"""Who may open a page: one rule for every view, in this order.

1. Anonymous: the login page (``?next=`` the URL). /metrics answers 401 instead: a scraper
   cannot follow a redirect.
2. Signed in without the view permission of the page's area — the "viewer" role: hosts, VMs,
   changes and plans, and the status page (``roles.VIEW_STATUS``) — 403, before anything the
   URL names is looked up (:func:`requires`). A user without a role therefore gets the same 403
   for a host that exists and for one that does not: a 403 never says what exists.
3. With it, an object that does not exist, or is not there to act on (a removed host, a VM
   gone from its host, an unknown change form, a cell the host does not have): 404.
4. An existing object the user may see but may not act on (a viewer on a change form or a
   sync, an operator on the numa_balancing switch or a balancing policy): 403, checked after
   the lookup (:func:`demand`, :func:`deny_unless`). Pages that act on no object (register a
   host) check the action's permission in :func:`requires` directly.

In short: 403 for an existing object the user may not act on, 404 for one they may not see
(one that is not there for them); a user without the area's role gets 403 for everything in it,
found or not. The permission names
are the constants of :mod:`numaportal.roles`; the services check the role again, so a page is
never the only guard. ``tests/web/test_url_matrix.py`` walks every URL pattern and holds every
page to this (a new page without a role check fails it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

__all__ = ["demand", "deny_unless", "requires"]

View = Callable[..., Any]


def requires(permission: str) -> Callable[[View], View]:
    """``@requires(roles.VIEW_HOST)``: login, then *permission* (403 without it), before the
    view looks anything up."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def checked(request, *args, **kwargs):
            demand(request.user, permission)
            return view(request, *args, **kwargs)

        return login_required(checked)

    return decorate


def demand(user: Any, permission: str) -> None:
    """403 (:class:`PermissionDenied`, its message the reason logged) unless *user* has
    *permission*."""
    if not user.has_perm(permission):
        raise PermissionDenied(f"needs {permission}")


def deny_unless(allowed: bool, reason: str) -> None:
    """403 with *reason* unless *allowed* (a rule that is not one permission, e.g. superusers
    only)."""
    if not allowed:
        raise PermissionDenied(reason)
