"""Admin pieces shared by the apps."""

from __future__ import annotations

from django.http import HttpRequest


class ReadOnlyMixin:
    """For ModelAdmins and inlines of records the portal writes itself (VMs from the sync,
    change records, balancing plans): shown, never added, edited or deleted in the admin."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
