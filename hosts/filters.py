"""The hosts list's filters (django-filter): by name and by sync state."""

from __future__ import annotations

import django_filters

from hosts.models import Host

#: Longest text of the name filter (Host.name's length).
NAME_MAX = 64


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

    class Meta:
        model = Host
        fields = ["name", "status"]
