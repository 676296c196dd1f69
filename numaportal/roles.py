"""Roles of the portal, kept as Django groups.

- "viewer": sees every page (the view_* permissions of hosts, vms and changes), the status
  page included, changes nothing. A signed-in user without a role sees no page at all (403).
- "operator": what a viewer sees, plus requesting changes to VMs (``changes.add_change``,
  checked by ``changes.requests.request_change`` itself, not only by the views).
- admin: superusers (hosts, schedules, users).

Staff grant the groups in the admin. They are ensured after every `migrate` (post_migrate)
rather than by a data migration: then a model added later to these apps joins the groups by
itself, and a test database that was flushed gets the groups back.
"""

from typing import Any

VIEWER_GROUP = "viewer"

# Permission names, written once: views, services and templates name these constants.
VIEW_HOST = "hosts.view_host"
ADD_HOST = "hosts.add_host"
CHANGE_HOST = "hosts.change_host"
DELETE_HOST = "hosts.delete_host"
VIEW_VM = "vms.view_virtualmachine"
VIEW_CHANGE = "changes.view_change"
#: The status page (home): database, broker URL, workers and their queues, libvirt URI and
#: versions, the lab's VM names — infrastructure, so the viewer's host permission.
VIEW_STATUS = VIEW_HOST
#: The operator's permission: request changes of VMs, plan and approve balancing.
ADD_CHANGE = "changes.add_change"

OPERATOR_GROUP = "operator"
VIEWER_APPS = ("hosts", "vms", "changes")
#: On top of the viewer's permissions.
OPERATOR_PERMISSIONS = (("changes", "add_change"),)


def require(actor: Any, permission: str, doing: str) -> None:
    """The services' check of who acts: *actor* None is the portal itself (the scheduler, a
    management command on the portal machine); a user must be signed in, active and hold
    *permission*, else :class:`django.core.exceptions.PermissionDenied` saying who may not do
    what (*doing*: "sync hosts")."""
    from django.core.exceptions import PermissionDenied

    if actor is None:
        return
    if not getattr(actor, "is_authenticated", False) or not actor.is_active:
        raise PermissionDenied(f"log in to {doing}")
    if not actor.has_perm(permission):
        raise PermissionDenied(f"{actor.get_username()} may not {doing}")


def ensure_viewer_group(**_kwargs: Any) -> None:
    """Ensure every role group (the name is the post_migrate hook's, kept for apps.py)."""
    from django.contrib.auth.models import Group, Permission
    from django.db.models import Q

    view = Permission.objects.filter(
        content_type__app_label__in=VIEWER_APPS, codename__startswith="view_"
    )
    viewer, _ = Group.objects.get_or_create(name=VIEWER_GROUP)
    viewer.permissions.add(*view)
    operate = Q()
    for app_label, codename in OPERATOR_PERMISSIONS:
        operate |= Q(content_type__app_label=app_label, codename=codename)
    operator, _ = Group.objects.get_or_create(name=OPERATOR_GROUP)
    operator.permissions.add(*view, *Permission.objects.filter(operate))


ensure_role_groups = ensure_viewer_group
