"""Admin for balancing: policies are edited here or on the policy page (superusers); plans are
read-only (they are computed, approved and applied through the portal only)."""

from __future__ import annotations

from django.contrib import admin

from balancing.models import BalancingPlan, BalancingPolicy
from balancing.policies import policy_errors
from numaportal.admin import ReadOnlyMixin


@admin.register(BalancingPolicy)
class BalancingPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "host",
        "mode",
        "min_improvement_pct",
        "max_moves",
        "strategy",
        "cpu_overcommit",
        "locality_threshold",
        "updated_at",
    ]
    list_filter = ["mode", "strategy"]
    list_select_related = ["host"]
    search_fields = ["host__name"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)

        class CheckedForm(form):
            # The same checks as the policy page (cpusets exist on the host, ...).
            def clean(self):
                data = super().clean()
                host = data.get("host") or getattr(self.instance, "host", None)
                if host is not None and not self.errors:
                    for field, messages in policy_errors(host, data).items():
                        self.add_error(field if field in self.fields else None, messages)
                return data

        return CheckedForm


@admin.register(BalancingPlan)
class BalancingPlanAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "host",
        "status",
        "trigger",
        "requested_by_name",
        "moves",
        "improvement_pct",
        "approved_by_name",
    ]
    list_filter = ["status", "trigger", "host"]
    search_fields = ["=id", "host__name", "requested_by_name", "approved_by_name", "reason"]
    date_hierarchy = "created_at"
    list_select_related = ["host"]
    readonly_fields = [f.name for f in BalancingPlan._meta.get_fields() if f.concrete]
    actions = None
