"""Roles of the portal, kept as Django groups.

- "viewer": sees every inventory page (the view_* permissions of hosts and vms), changes
  nothing. Staff grant it in the admin.

The group is ensured after every `migrate` (post_migrate) rather than by a data migration:
then a model added later to hosts or vms joins the group by itself, and a test database that
was flushed gets the group back.
"""

from typing import Any

VIEWER_GROUP = "viewer"
VIEWER_APPS = ("hosts", "vms")


def ensure_viewer_group(**_kwargs: Any) -> None:
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=VIEWER_GROUP)
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=VIEWER_APPS, codename__startswith="view_"
        )
    )
