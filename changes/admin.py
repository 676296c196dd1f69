"""Read-only admin for change records: no add, no edit, no delete (append-only audit trail)."""

from __future__ import annotations

from django.contrib import admin

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
