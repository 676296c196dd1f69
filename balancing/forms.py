"""Forms of the balancing pages: approving a plan, and a host's balancing policy."""

from __future__ import annotations

from typing import Any

from django import forms

from balancing import policies as plan_policies
from balancing.models import BalancingPolicy
from hosts.models import Host
from numaportal.bounds import DecimalNumberField, WholeNumberField


class ApproveForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Why apply this plan now (kept in the audit trail of every change).",
        error_messages={"required": "say why: a reason is required for the audit trail"},
    )


class PolicyForm(forms.ModelForm):
    """The policy fields; values are checked against the host (cpusets parse and exist,
    over-commit at least 1, ...) by :func:`balancing.services.policy_errors`. Numbers are ASCII
    digits and finite (:mod:`numaportal.bounds`), not whatever ``int()`` / ``float()`` take."""

    class Meta:
        model = BalancingPolicy
        fields = list(plan_policies.POLICY_FIELDS)
        labels = {
            "mode": "Mode",
            "min_improvement_pct": "Minimum improvement (%)",
            "max_moves": "Maximum VMs moved per plan",
            "cpu_overcommit": "CPU over-commit",
            "emulator": "Emulator threads",
            "housekeeping": "Housekeeping CPUs",
            "reserved": "Reserved CPUs",
            "whole_cores": "Dedicated VMs get whole cores",
            "memory_reserve_mib": "Memory kept per cell (MiB)",
            "locality_threshold": "Locality threshold (0..1)",
        }
        widgets = {"mode": forms.RadioSelect, "strategy": forms.RadioSelect}
        field_classes = {
            "min_improvement_pct": DecimalNumberField,
            "max_moves": WholeNumberField,
            "cpu_overcommit": DecimalNumberField,
            "memory_reserve_mib": WholeNumberField,
            "locality_threshold": DecimalNumberField,
        }

    reason = forms.CharField(
        label="Reason",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Why change the policy (kept in the audit trail: a balancing_policy change).",
        error_messages={"required": "say why: a reason is required for the audit trail"},
    )

    def __init__(self, *args: Any, host: Host, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = host
        self.fields["cpu_overcommit"].widget.attrs.update({"min": "1", "step": "0.1"})
        self.fields["min_improvement_pct"].widget.attrs.update(
            {"min": "0", "max": "100", "step": "0.5"}
        )
        self.fields["max_moves"].widget.attrs["min"] = "1"
        self.fields["locality_threshold"].widget.attrs.update(
            {"min": "0", "max": "1", "step": "0.01"}
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.errors:
            for field, messages in plan_policies.policy_errors(self.host, data).items():
                self.add_error(field if field in self.fields else None, messages)
        return data
