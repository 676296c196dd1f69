"""Read-only admin for VMs: they are written by the inventory sync, never by hand."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from numaportal.admin import ReadOnlyMixin
from vms.models import VcpuPin, VirtualMachine


class GoneFilter(admin.SimpleListFilter):
    title = "gone"
    parameter_name = "gone"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):
        return [("no", "present"), ("yes", "gone from its host")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[VirtualMachine]):
        if self.value() == "yes":
            return queryset.filter(gone_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(gone_at__isnull=True)
        return queryset


class VcpuPinInline(ReadOnlyMixin, admin.TabularInline):
    model = VcpuPin
    fields = ["vcpu", "online", "state", "last_cpu", "affinity", "pin_live", "pin_config"]
    readonly_fields = fields
    extra = 0


@admin.register(VirtualMachine)
class VirtualMachineAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "host",
        "state",
        "pinning",
        "cells",
        "cross_node",
        "drift",
        "vcpu_current_live",
        "vcpu_max_config",
        "last_seen_at",
        "gone_at",
    ]
    list_filter = ["host", "state", "pinning", "cross_node", "drift", GoneFilter]
    list_select_related = ["host"]
    search_fields = ["name", "uuid"]
    inlines = [VcpuPinInline]
