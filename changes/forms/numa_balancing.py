"""The host page's numa_balancing form: 0 or 1, and why
(:func:`changes.requests.request_numa_balancing` validates and records it)."""

from __future__ import annotations

from django import forms

from changes.kinds.numa_balancing import ALLOWED_VALUES, LIVE_ONLY, VALUE_WORDS


class NumaBalancingForm(forms.Form):
    """Switch /proc/sys/kernel/numa_balancing of a host: one of the values the portal writes."""

    value = forms.TypedChoiceField(
        coerce=int,
        choices=[(value, f"{value} — {VALUE_WORDS[value]}") for value in ALLOWED_VALUES],
        widget=forms.RadioSelect,
        label="New value",
        help_text=f"{LIVE_ONLY.capitalize()}.",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=2000,
        label="Reason",
        help_text="Required: kept in the change record with who and when.",
    )
