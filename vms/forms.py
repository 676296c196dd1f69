"""Forms of the VM pages that are not changes (the change forms are in :mod:`changes.forms`)."""

from __future__ import annotations

from django import forms

from vms.models import VirtualMachine

__all__ = ["BalancingFlagsForm"]


class BalancingFlagsForm(forms.ModelForm):
    """The VM's flags for the balancing planner (balancing.planner.VmDemand.locked / dedicated)."""

    class Meta:
        model = VirtualMachine
        fields = ["balancing_locked", "dedicated"]
        labels = {
            "balancing_locked": "Locked: never moved by a balancing plan",
            "dedicated": "Dedicated: whole cores of its own, no over-commit",
        }

    reason = forms.CharField(
        label="Reason (kept in the audit trail)",
        max_length=1000,
        widget=forms.TextInput(attrs={"size": 40, "placeholder": "why (for the audit trail)"}),
        error_messages={"required": "say why: a reason is required for the audit trail"},
    )
