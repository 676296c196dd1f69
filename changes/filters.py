"""Filters of the change history (django-filter), shared by the list page and its CSV export.

The kind and status choices are the single definitions: the kinds' registry
(:mod:`changes.kinds.registry`, in ``Change.Kind`` order) and ``Change.Status``.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet

from changes.kinds import registry
from changes.models import Change
from hosts.models import Host


class ChangeFilter(django_filters.FilterSet):
    host = django_filters.ModelChoiceFilter(
        queryset=Host.objects.all(), to_field_name="name", empty_label="all hosts"
    )
    vm = django_filters.NumberFilter(field_name="vm_id", widget=forms.HiddenInput)
    target = django_filters.CharFilter(
        field_name="target_name", lookup_expr="icontains", label="VM name contains"
    )
    actor = django_filters.CharFilter(
        field_name="actor_name", lookup_expr="icontains", label="Actor"
    )
    kind = django_filters.ChoiceFilter(choices=registry.choices(), empty_label="any kind")
    status = django_filters.ChoiceFilter(choices=Change.Status.choices, empty_label="any status")
    created = django_filters.DateFromToRangeFilter(
        field_name="created_at",
        label="Requested between",
        widget=django_filters.widgets.DateRangeWidget(attrs={"type": "date"}),
    )
    q = django_filters.CharFilter(method="filter_text", label="Reason contains")
    group = django_filters.UUIDFilter(field_name="group_id", widget=forms.HiddenInput)

    class Meta:
        model = Change
        fields = ["host", "vm", "target", "actor", "kind", "status", "created", "q", "group"]

    def filter_text(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        query = Q()
        for word in value.split():
            query &= Q(reason__icontains=word)
        return queryset.filter(query)
