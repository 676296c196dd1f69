"""Read-only admin for change records: no add, no edit, no delete (append-only audit trail)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from changes.models import Change


@admin.register(Change)
class ChangeAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
