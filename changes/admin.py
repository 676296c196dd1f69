"""Read-only admin for change records: no add, no edit, no delete (append-only audit trail);
and the user admin, which refuses to delete a user named by audit records (who made changes,
who requested or approved a balancing plan), saying why and what to do instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ImproperlyConfigured
from django.db import models
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


@dataclass(frozen=True)
class UserRecords:
    """Audit records that name a user, in the words of the refusal: "bob *made* 12 *changes*"."""

    model: type[models.Model]
    #: The foreign key to the user (on_delete=PROTECT).
    field: str
    verb: str
    noun: str
    plural: str

    def words(self, count: int) -> str:
        return f"{self.verb} {count} {self.noun if count == 1 else self.plural}"


_USER_RECORDS: list[UserRecords] = []


def register_user_records(
    model: type[models.Model], field: str, verb: str, noun: str, plural: str = ""
) -> None:
    """Records of *model* whose *field* names a user keep that user from being deleted.

    ``changes`` registers ``Change.actor`` below; an app above it registers its own audit
    records from its admin module (``balancing.admin``: who requested, who approved a plan),
    as this module may not import them. The foreign key must be PROTECT: the refusal says the
    records stay as they are, and the ORM must refuse the delete too.
    """
    on_delete = model._meta.get_field(field).remote_field.on_delete
    if on_delete is not models.PROTECT:
        raise ImproperlyConfigured(
            f"{model._meta.label}.{field} is on_delete={on_delete.__name__}, not PROTECT: "
            "deleting the user would rewrite these records"
        )
    entry = UserRecords(model, field, verb, noun, plural or f"{noun}s")
    if not any((e.model, e.field) == (model, field) for e in _USER_RECORDS):
        _USER_RECORDS.append(entry)


def registered_user_records() -> tuple[UserRecords, ...]:
    return tuple(_USER_RECORDS)


register_user_records(Change, "actor", "made", "change")


def refusal(user: Any, counts: list[tuple[UserRecords, int]]) -> str:
    """Why *user* cannot be deleted: "bob made 12 changes and approved 1 balancing plan:
    deactivate the account instead (uncheck Active)"."""
    parts = [records.words(count) for records, count in counts]
    said = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    return f"{user.get_username()} {said}: deactivate the account instead (uncheck Active)"


User = get_user_model()


class AuditedUserAdmin(UserAdmin):
    """Django's user admin, except that a user named by audit records is never deleted.

    The records' foreign keys to the user are PROTECT (``Change.actor``, and what the apps
    above register with :func:`register_user_records`: a balancing plan's ``requested_by`` and
    ``approved_by``): deleting would rewrite the user's records, so the delete page and the
    "delete selected" action list, instead of the records, why not and what to do (deactivate:
    the account stays, its name unique, and cannot log in). Other users are deleted as before.
    """

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        users = list(objs)
        counts: dict[Any, list[tuple[UserRecords, int]]] = {}
        for records in registered_user_records():
            rows = (
                records.model._default_manager.filter(**{f"{records.field}__in": users})
                .order_by()
                .values(records.field)
                .annotate(n=Count("pk"))
            )
            for row in rows:
                counts.setdefault(row[records.field], []).append((records, row["n"]))
        refused = [refusal(user, counts[user.pk]) for user in users if user.pk in counts]
        if refused:
            # Not "you lack the permission to delete change records" (nobody has it): why not.
            return deleted, model_count, set(), refused
        return deleted, model_count, perms_needed, protected


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)
