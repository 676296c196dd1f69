"""The VM list's filters (django-filter): by host, state, pinning, cross-node, gone; and its
sort order (``?sort=<column>``, ``?sort=-<column>`` for descending)."""

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

#: The columns the VM list sorts by: field -> the ``sort`` parameter's word.
SORT_FIELDS = (
    ("name", "name"),
    ("host__name", "host"),
    ("state", "state"),
    ("vcpu_current_config", "vcpus"),
    ("memory_kib", "memory"),
    ("pinning", "pinning"),
)
#: After the chosen column, rows of equal values keep the list's own order (and a page never
#: shows a row of the next one: the primary key last).
SORT_TIES = ("host__name", "name", "pk")


class SortFilter(django_filters.OrderingFilter):
    """django-filter's OrderingFilter, with :data:`SORT_TIES` after the chosen column."""

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if not value:
            return qs
        chosen = [self.get_ordering_value(param) for param in value]
        return qs.order_by(*chosen, *(tie for tie in SORT_TIES if tie not in chosen))


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
    sort = SortFilter(fields=SORT_FIELDS, label="Sort by")

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
