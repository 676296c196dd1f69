"""The VM list's filters (django-filter): by host, state, pinning, cross-node, gone."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import QuerySet

from hosts.models import Host
from vms.models import VirtualMachine

# The states `virsh list --all` prints (virDomainState), in its words.
STATES = [
    ("running", "running"),
    ("idle", "idle"),
    ("paused", "paused"),
    ("in shutdown", "in shutdown"),
    ("shut off", "shut off"),
    ("crashed", "crashed"),
    ("pmsuspended", "pmsuspended"),
]

#: Longest text of the name filter (VirtualMachine.name's length).
NAME_MAX = 255

YES_NO = [("", "any"), ("true", "yes"), ("false", "no")]


class VirtualMachineFilter(django_filters.FilterSet):
    host = django_filters.ModelChoiceFilter(
        queryset=Host.objects.all(), to_field_name="name", empty_label="all hosts"
    )
    state = django_filters.ChoiceFilter(choices=STATES, empty_label="any state")
    pinning = django_filters.ChoiceFilter(
        choices=VirtualMachine.Pinning.choices, empty_label="any pinning"
    )
    cross_node = django_filters.TypedChoiceFilter(
        choices=YES_NO,
        coerce=lambda v: {"true": True, "false": False}.get(v, v),
        label="Cross-node",
        empty_value="",
    )
    drift = django_filters.TypedChoiceFilter(
        choices=YES_NO,
        coerce=lambda v: {"true": True, "false": False}.get(v, v),
        label="Live-only tuning",
        empty_value="",
    )
    changed_outside = django_filters.TypedChoiceFilter(
        choices=YES_NO,
        coerce=lambda v: {"true": True, "false": False}.get(v, v),
        label="Changed outside the portal",
        empty_value="",
    )
    include_gone = django_filters.BooleanFilter(
        label="Include gone VMs",
        method="filter_include_gone",
        widget=forms.CheckboxInput,
    )
    name = django_filters.CharFilter(
        lookup_expr="icontains", label="Name contains", max_length=NAME_MAX
    )

    class Meta:
        model = VirtualMachine
        fields = ["host", "state", "pinning", "cross_node", "drift", "changed_outside", "name"]

    def filter_include_gone(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        # Applied in filter_queryset (it must act when the box is *not* ticked).
        return queryset

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_gone"):
            queryset = queryset.filter(gone_at__isnull=True)
        return queryset
