"""Filters of the change history (django-filter), shared by the list page and its CSV export.

The kind and status choices are the single definitions: the kinds' registry
(:mod:`changes.kinds.registry`, in ``Change.Kind`` order) and ``Change.Status``. Ids, dates,
the group's UUID and the texts are bounded (:mod:`numaportal.bounds`): a value out of range is
a form error, never a query the database refuses.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet

from changes.kinds import registry
from changes.models import Change
from hosts.models import Host
from numaportal.bounds import (
    AsciiUUIDFilter,
    BoundedDateFromToRangeFilter,
    IdFilter,
    SearchTextFilter,
)

#: Longest text of the name filters (a VM's name and an actor's are shorter).
NAME_MAX = 255


class ChangeFilter(django_filters.FilterSet):
    host = django_filters.ModelChoiceFilter(
        queryset=Host.objects.all(), to_field_name="name", empty_label="all hosts"
    )
    vm = IdFilter(field_name="vm_id", widget=forms.HiddenInput, label="VM")
    target = django_filters.CharFilter(
        field_name="target_name",
        lookup_expr="icontains",
        label="VM name contains",
        max_length=NAME_MAX,
    )
    actor = django_filters.CharFilter(
        field_name="actor_name", lookup_expr="icontains", label="Actor", max_length=NAME_MAX
    )
    kind = django_filters.ChoiceFilter(choices=registry.choices(), empty_label="any kind")
    status = django_filters.ChoiceFilter(choices=Change.Status.choices, empty_label="any status")
    created = BoundedDateFromToRangeFilter(
        field_name="created_at",
        label="Requested between",
        widget=django_filters.widgets.DateRangeWidget(attrs={"type": "date"}),
    )
    q = SearchTextFilter(method="filter_text", label="Reason contains")
    group = AsciiUUIDFilter(field_name="group_id", widget=forms.HiddenInput, label="Group")

    class Meta:
        model = Change
        fields = ["host", "vm", "target", "actor", "kind", "status", "created", "q", "group"]

    def filter_text(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        query = Q()
        for word in value.split():
            query &= Q(reason__icontains=word)
        return queryset.filter(query)
