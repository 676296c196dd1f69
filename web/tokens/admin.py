"""API tokens in the admin: superusers see every user's tokens and revoke (delete) them;
nothing else. knox's own admin lets any staff user with knox's permissions create a token for
any user (then "TOKEN ..." in a message) and edit its user or expiry: a staff user with
``knox.add_authtoken`` could become anyone. Here the list is read-only, there is no add form,
and every permission is the superuser's; a user creates their own tokens on
``/account/tokens/`` (:mod:`web.tokens.views`)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from knox import admin as knox_admin  # registers knox's admin first, so it can be replaced
from knox.models import AuthToken

__all__ = ["AuthTokenAdmin"]

if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class AuthTokenAdmin(admin.ModelAdmin):
    list_display = ("token_key", "user", "created", "expiry")
    list_filter = ("expiry",)
    search_fields = ("token_key", "user__username")
    # The prefix names a token; the digest (knox's hash, the primary key) is only in URLs.
    fields = ("token_key", "user", "created", "expiry")
    readonly_fields = fields
    ordering = ("-created",)

    def has_view_permission(self, request: HttpRequest, obj: AuthToken | None = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuthToken | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuthToken | None = None) -> bool:
        return self.has_view_permission(request)


del knox_admin
