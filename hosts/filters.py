"""The hosts list's filters (django-filter): by name, sync status, state and numa_balancing.

``state`` takes the ops dashboard's words (:mod:`hosts.states`: in sync, stale, sync failed,
starting), so each of the dashboard's host figures links to exactly the hosts it counts;
``numa_balancing`` the value the last on-host read found, or ``unknown`` (never read).
"""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from hosts.models import Host
from hosts.states import HostState, state_q

#: Longest text of the name filter (Host.name's length).
NAME_MAX = 64
#: The ``numa_balancing`` filter's word for hosts whose value was never read.
UNKNOWN = "unknown"
NUMA_BALANCING_CHOICES = [
    ("0", "0 (off)"),
    ("1", "1 (on)"),
    ("2", "2 (memory tiering)"),
    ("3", "3 (on + memory tiering)"),
    (UNKNOWN, "not read"),
]


class HostFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(
        lookup_expr="icontains", label="Name contains", max_length=NAME_MAX
    )
    status = django_filters.ChoiceFilter(
        field_name="sync_status",
        choices=Host.SyncStatus.choices,
        empty_label="any sync state",
        label="Sync",
    )
    state = django_filters.ChoiceFilter(
        choices=HostState.choices, empty_label="any state", label="State", method="filter_state"
    )
    numa_balancing = django_filters.ChoiceFilter(
        choices=NUMA_BALANCING_CHOICES,
        empty_label="any numa_balancing",
        label="numa_balancing",
        method="filter_numa_balancing",
    )

    class Meta:
        model = Host
        fields = ["name", "status", "state", "numa_balancing"]

    def filter_state(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(state_q(value, timezone.now()))

    def filter_numa_balancing(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == UNKNOWN:
            return queryset.filter(numa_balancing__isnull=True)
        return queryset.filter(numa_balancing=int(value))
