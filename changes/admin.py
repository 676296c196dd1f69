"""Read-only admin for change records: no add, no edit, no delete (append-only audit trail);
and the user admin, which refuses to delete a user who made changes."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count
from django.http import HttpRequest

from changes.models import Change
from numaportal.admin import ReadOnlyMixin


@admin.register(Change)
class ChangeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "kind",
        "target_name",
        "host",
        "scope",
        "status",
        "actor_name",
        "reason",
    ]
    list_filter = ["status", "kind", "scope", "host"]
    search_fields = ["target_name", "actor_name", "reason", "=id", "=group_id"]
    date_hierarchy = "created_at"
    list_select_related = ["host"]
    readonly_fields = [f.name for f in Change._meta.get_fields() if f.concrete]
    actions = None


def made_changes(user: Any, count: int) -> str:
    """Why *user* cannot be deleted: "bob made 12 changes: deactivate the account instead"."""
    noun = "change" if count == 1 else "changes"
    return (
        f"{user.get_username()} made {count} {noun}: deactivate the account instead "
        "(uncheck Active)"
    )


User = get_user_model()


class AuditedUserAdmin(UserAdmin):
    """Django's user admin, except that a user who made changes is never deleted.

    ``Change.actor`` is PROTECT: deleting would rewrite the user's records, so the delete page
    and the "delete selected" action list, instead of the records, why not and what to do
    (deactivate: the account stays, its name unique, and cannot log in). Users without changes
    are deleted as before.
    """

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        counts = {
            row["actor"]: row["n"]
            for row in Change.objects.filter(actor__in=list(objs))
            .order_by()
            .values("actor")
            .annotate(n=Count("id"))
        }
        refused = [made_changes(user, counts[user.pk]) for user in objs if counts.get(user.pk)]
        if refused:
            # Not "you lack the permission to delete change records" (nobody has it): why not.
            return deleted, model_count, set(), refused
        return deleted, model_count, perms_needed, protected


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)
