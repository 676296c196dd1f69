"""Admin for balancing: policies are edited here or on the policy page (superusers, with a
reason, through the same service and its change record); plans are read-only (they are
computed, approved and applied through the portal only), and a user who requested or approved
one is not deleted by the user admin (``changes.admin``, which says why: deactivate instead)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from balancing.access import can_edit_policy
from balancing.models import BalancingPlan, BalancingPolicy
from balancing.policies import POLICY_FIELDS, policy_errors, update_policy
from changes.admin import register_user_records
from numaportal.admin import ReadOnlyMixin


class PolicyAdminForm(forms.ModelForm):
    """The policy page's checks (cpusets exist on the host, ...) and its reason."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Why change the policy (kept in the audit trail: a balancing_policy change).",
        error_messages={"required": "say why: a reason is required for the audit trail"},
    )

    class Meta:
        model = BalancingPolicy
        fields = ["host", *POLICY_FIELDS]

    def clean(self):
        data = super().clean()
        host = data.get("host") or getattr(self.instance, "host", None)
        if host is not None and not self.errors:
            for field, messages in policy_errors(host, data).items():
                self.add_error(field if field in self.fields else None, messages)
        return data


@admin.register(BalancingPolicy)
class BalancingPolicyAdmin(admin.ModelAdmin):
    """Saved through :func:`balancing.policies.update_policy`, as on the policy page: the same
    permission (superusers) and the same change record; never deleted here (a deletion would
    leave no record: set the values instead)."""

    form = PolicyAdminForm
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
    actions = None

    def get_readonly_fields(self, request: HttpRequest, obj: BalancingPolicy | None = None):
        return ["host"] if obj is not None else []

    def has_add_permission(self, request: HttpRequest) -> bool:
        return can_edit_policy(request.user)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return can_edit_policy(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: BalancingPolicy, form, change: bool) -> None:
        policy = update_policy(
            host=obj.host,
            actor=request.user,
            values=form.cleaned_data,
            reason=form.cleaned_data["reason"],
        )
        obj.pk, obj._state.adding = policy.pk, False


# Plans are audit records too (who asked, who approved): their users are PROTECT.
register_user_records(BalancingPlan, "requested_by", "requested", "balancing plan")
register_user_records(BalancingPlan, "approved_by", "approved", "balancing plan")


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
