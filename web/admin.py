"""Admin for hosts: registration goes through the same validation as the portal's form and,
like it, never contacts the host in the request: saving a new host (or a changed URI) queues
its connection test and then its sync on a worker. Hosts are removed (kept with their history),
never deleted, except one that never connected, which has no history to keep.

It sits in the top layer, not in ``hosts/admin.py``, because saving a host queues its sync
(:mod:`vms.requests`, a layer above ``hosts``). The other apps' admins stay in their apps.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from hosts import services
from hosts.models import FACT_FIELDS, Cell, Host
from numaportal import roles
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.errors import VirtError
from vms import requests
from web.tokens import admin as _tokens_admin  # noqa: F401 (API tokens: superusers only)


class HostAdminForm(forms.ModelForm):
    class Meta:
        model = Host
        fields = ["name", "uri", "enabled", "worker_queue"]

    def clean(self) -> dict:
        data = super().clean()
        name = data.get("name") or (self.instance.name if self.instance.pk else None)
        uri = data.get("uri")
        if self.errors or not name or not uri:
            return data
        if self.instance.pk and uri == self.instance.uri and name == self.instance.name:
            return data  # nothing to re-check: enabling/disabling or a queue change
        try:
            # No libvirt call here: the connection test runs on a worker (save_model).
            data["uri"] = services.validate_registration(
                name=name, uri=uri, exclude_pk=self.instance.pk
            )
        except VirtError as exc:
            # The URI validator's words, next to the URI field.
            self.add_error("uri", str(exc))
        except ValidationError as exc:
            self.add_error(None, exc)
        return data


#: What a sync writes (shown read-only, in the "Last sync" and "Facts" sections).
_LAST_SYNC = [
    "sync_status",
    "sync_task_id",
    "last_sync_at",
    "last_sync_ok_at",
    "last_error",
    "check_answer",
]
_FACTS = [*FACT_FIELDS, "created_at", "removed_at"]


class CellInline(admin.TabularInline):
    model = Cell
    fields = ["cell_id", "memory_kib", "free_kib", "distances", "cpu_list"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Host | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Host | None = None) -> bool:
        return False

    @admin.display(description="CPUs")
    def cpu_list(self, cell: Cell) -> str:
        ids = list(cell.cpus.values_list("cpu_id", flat=True))
        return format_cpuset(ids) if ids else "none (memory only)"


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    form = HostAdminForm
    list_display = [
        "name",
        "uri",
        "enabled",
        "sync_status",
        "last_sync_at",
        "last_error_short",
        "removed_at",
    ]
    list_filter = ["enabled", "sync_status", ("removed_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "uri", "hostname"]
    actions = ["sync_selected_hosts", "remove_selected_hosts"]
    inlines = [CellInline]
    readonly_fields = [*_LAST_SYNC, *_FACTS]

    def get_readonly_fields(self, request: HttpRequest, obj: Host | None = None) -> list[str]:
        # The name is in every URL of the host; it is chosen once.
        return [*self.readonly_fields, "name"] if obj is not None else self.readonly_fields

    def get_fieldsets(self, request: HttpRequest, obj: Host | None = None):
        registration = ("Registration", {"fields": ["name", "uri", "enabled", "worker_queue"]})
        if obj is None:
            return [registration]
        return [
            registration,
            ("Last sync", {"fields": _LAST_SYNC}),
            ("Facts", {"fields": _FACTS}),
        ]

    def get_inlines(self, request: HttpRequest, obj: Host | None):
        return self.inlines if obj is not None else []

    @admin.display(description="last error")
    def last_error_short(self, host: Host) -> str:
        return Truncator(host.last_error).chars(80)

    def has_delete_permission(self, request: HttpRequest, obj: Host | None = None) -> bool:
        # Deleting would orphan the change history; "Remove" keeps it (see the action).
        return False

    def save_model(self, request: HttpRequest, obj: Host, form: forms.ModelForm, change: bool):
        super().save_model(request, obj, form, change)
        if not change or "uri" in form.changed_data:
            # Validated (HostAdminForm.clean), not yet tried: test it on a worker, then sync,
            # as register_host does. The host's page shows libvirt's answer.
            requests.request_check(obj)
            self.message_user(
                request,
                f"Testing the connection to {obj.uri} on a worker; the host's page shows "
                "libvirt's answer, then the first sync.",
                messages.INFO,
            )

    @admin.action(description="Sync selected hosts now", permissions=["change"])
    def sync_selected_hosts(self, request: HttpRequest, queryset: QuerySet[Host]) -> None:
        outcomes = [requests.request_sync(h, actor=request.user) for h in queryset.active()]
        pending = outcomes.count(requests.SyncRequest.PENDING)
        words = f"Queued a sync of {len(outcomes) - pending} host(s)."
        if pending:
            words += f" {pending} already had one queued or running."
        self.message_user(request, words, messages.SUCCESS)

    def has_remove_permission(self, request: HttpRequest) -> bool:
        # The host page's "Remove" asks for the same (web.hosts.views.host_remove).
        return request.user.has_perm(roles.DELETE_HOST)

    @admin.action(description="Remove selected hosts (keeps history)", permissions=["remove"])
    def remove_selected_hosts(self, request: HttpRequest, queryset: QuerySet[Host]) -> None:
        hosts = list(queryset.active())
        forgotten = sum(services.remove_host(host, actor=request.user) for host in hosts)
        removed = len(hosts) - forgotten
        words = [f"Removed {removed} host(s); their VMs and history are kept."] if removed else []
        if forgotten:
            words.append(f"Forgot {forgotten} host(s) that never connected.")
        self.message_user(request, " ".join(words) or "No host removed.", messages.SUCCESS)
