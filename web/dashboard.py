"""The ops dashboard, the landing page: the state of the fleet an operator came to check.

Each figure is one query whatever the fleet size (aggregates with ``filter=``, or a short
``LIMIT``ed list), and each links to the list it counts, filtered: hosts by state
(:mod:`hosts.states`) and by numa_balancing, VMs with live-only tuning or changed outside the
portal, changes failed in the last 24 hours, plans waiting for approval, the VMs with the most
remote memory and the least-local ones. A figure the user may not view is left out (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Q
from django.urls import reverse

from balancing import locality as balancing_locality
from balancing.models import BalancingPlan
from changes.kinds.numa_balancing import VALUE_WORDS
from changes.models import Change
from hosts import filters as host_filters
from hosts import states
from hosts.models import Host
from numaportal import roles
from vms.models import VirtualMachine, VmLocalitySample

__all__ = ["Dashboard", "Figure", "collect"]

#: Rows of each short list on the dashboard (the link leads to the rest).
LIST_ROWS = 8
FAILED_WINDOW = timedelta(hours=24)
_TONE = {
    states.HostState.IN_SYNC: "ok",
    states.HostState.STALE: "warn",
    states.HostState.FAILED: "bad",
    states.HostState.STARTING: "muted",
}


@dataclass(frozen=True)
class Figure:
    """One number on the dashboard and the filtered list it counts."""

    label: str
    count: int
    url: str
    #: ok / warn / bad / muted: the colour of the count (bad only when count > 0).
    tone: str = "muted"


@dataclass(frozen=True)
class Dashboard:
    host_states: list[Figure] | None = None
    host_total: int = 0
    numa_balancing: list[Figure] | None = None
    vm_figures: list[Figure] | None = None
    drifted_vms: list[VirtualMachine] | None = None
    #: One figure each (a list, as every figure row of the page).
    failed_changes: list[Figure] | None = None
    recent_failures: list[Change] | None = None
    plans_waiting: list[Figure] | None = None
    waiting_plans: list[BalancingPlan] | None = None
    most_remote: list[dict[str, Any]] | None = None
    least_local: list[balancing_locality.LeastLocal] | None = None
    below_threshold: int = 0


def _url(name: str, **query: Any) -> str:
    return f"{reverse(name)}?{urlencode(query)}" if query else reverse(name)


def _host_figures(now: datetime) -> tuple[list[Figure], int]:
    counts = states.state_counts(Host.objects.active(), now)
    figures = [
        Figure(
            state.label,
            counts[state.value],
            _url("hosts:list", state=state.value),
            _TONE[state] if counts[state.value] else "muted",
        )
        for state in states.HostState
    ]
    return figures, sum(counts.values())


def _numa_balancing_figures() -> list[Figure]:
    """Hosts per numa_balancing value (what the last on-host read said), "unknown" last."""
    rows = list(
        Host.objects.active()
        .values_list("numa_balancing")
        .annotate(n=Count("pk"))
        .order_by("numa_balancing")
    )
    figures = []
    for value, count in rows:
        if value is None:
            continue
        words = VALUE_WORDS.get(value, f"value {value}")
        figures.append(
            Figure(f"{value} ({words})", count, _url("hosts:list", numa_balancing=value))
        )
    unknown = sum(count for value, count in rows if value is None)
    if unknown:
        figures.append(
            Figure(
                "not read (no on-host worker)",
                unknown,
                _url("hosts:list", numa_balancing=host_filters.UNKNOWN),
            )
        )
    return figures


def _vm_figures() -> tuple[list[Figure], list[VirtualMachine]]:
    present = VirtualMachine.objects.filter(gone_at__isnull=True, host__removed_at__isnull=True)
    counts = present.aggregate(
        live_only=Count("pk", filter=Q(drift=True)),
        changed_outside=Count("pk", filter=Q(changed_outside=True)),
        cross_node=Count("pk", filter=Q(cross_node=True)),
    )
    figures = [
        Figure(
            "live-only tuning (lost at shutdown)",
            counts["live_only"],
            _url("vms:list", drift="true"),
            "warn" if counts["live_only"] else "muted",
        ),
        Figure(
            "changed outside the portal",
            counts["changed_outside"],
            _url("vms:list", changed_outside="true"),
            "warn" if counts["changed_outside"] else "muted",
        ),
        Figure("cross-node", counts["cross_node"], _url("vms:list", cross_node="true")),
    ]
    drifted = list(
        present.filter(Q(drift=True) | Q(changed_outside=True))
        .select_related("host")
        .only("name", "uuid", "drift", "changed_outside", "host__name")
        .order_by("host__name", "name")[:LIST_ROWS]
    )
    return figures, drifted


def _failed_changes(now: datetime) -> tuple[list[Figure], list[Change]]:
    since = now - FAILED_WINDOW
    failed = Change.objects.filter(status=Change.Status.FAILED, created_at__gte=since)
    count = failed.count()
    # The change list filters by day: from yesterday's date covers the last 24 hours.
    figure = Figure(
        "failed in the last 24 h",
        count,
        _url("changes:list", status=Change.Status.FAILED, created_after=since.date().isoformat()),
        "bad" if count else "muted",
    )
    recent = list(
        failed.select_related("host")
        .only("id", "kind", "target_name", "error", "created_at", "host__name")
        .order_by("-created_at")[:LIST_ROWS]
    )
    return [figure], recent


def _plans_waiting() -> tuple[list[Figure], list[BalancingPlan]]:
    waiting = BalancingPlan.objects.filter(status=BalancingPlan.Status.READY)
    count = waiting.count()
    figure = Figure(
        "waiting for approval",
        count,
        _url("balancing:list", status=BalancingPlan.Status.READY),
        "warn" if count else "muted",
    )
    plans = list(
        waiting.select_related("host")
        .only("id", "created_at", "trigger", "host__name")
        .order_by("-created_at")[:LIST_ROWS]
    )
    return [figure], plans


def _most_remote() -> list[dict[str, Any]]:
    """The running VMs with the most own memory outside their home cells, at the last sample."""
    rows = (
        VmLocalitySample.objects.filter(
            latest=True,
            remote_mib__gt=0,
            vm__gone_at__isnull=True,
            vm__vcpu_current_live__isnull=False,
            host__removed_at__isnull=True,
        )
        .order_by("-remote_mib", "host__name", "vm__name")
        .values("host__name", "vm__name", "vm__uuid", "remote_mib", "home_cells", "taken_at")[
            :LIST_ROWS
        ]
    )
    return list(rows)


def collect(user: Any, now: datetime) -> Dashboard:
    """Every figure *user* may view, at *now* (a constant number of queries)."""
    parts: dict[str, Any] = {}
    if user.has_perm(roles.VIEW_HOST):
        parts["host_states"], parts["host_total"] = _host_figures(now)
        parts["numa_balancing"] = _numa_balancing_figures()
    if user.has_perm(roles.VIEW_VM):
        parts["vm_figures"], parts["drifted_vms"] = _vm_figures()
        parts["most_remote"] = _most_remote()
        parts["least_local"] = balancing_locality.least_local()
        parts["below_threshold"] = balancing_locality.below_threshold_count()
    if user.has_perm(roles.VIEW_CHANGE):
        parts["failed_changes"], parts["recent_failures"] = _failed_changes(now)
        # Plans are read with the changes' permission (a plan is a batch of changes).
        parts["plans_waiting"], parts["waiting_plans"] = _plans_waiting()
    return Dashboard(**parts)
