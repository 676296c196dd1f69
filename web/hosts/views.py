"""Host pages: dashboard, registration, topology, sync and removal.

Views stay thin: reads go through ``hosts.selectors``, writes through ``hosts.services``.
Every page needs a login and the model's view permission (the "viewer" group has exactly the
view permissions); registering, syncing and removing need add/change/delete_host, checked once
the host was found (:mod:`web.access`: 404 for an unknown host, then 403).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from balancing import locality as locality_thresholds
from changes.forms.numa_balancing import NumaBalancingForm
from changes.kinds import numa_balancing
from changes.requests import request_numa_balancing
from hosts import history as numastat_history
from hosts import numastat, selectors, services
from hosts.diagram import render_cell_svg, render_topology_svg
from hosts.filters import HostFilter
from hosts.forms import CellChoiceForm, HostRegisterForm
from hosts.models import Host
from hosts.topology_summary import distance_classes, distance_matrix, lscpu_summary
from numaportal import roles
from numaportal.bounds import filter_results
from numaportal.forms import add_service_errors
from vms import requests
from vms import selectors as vm_selectors
from vms.memory import memory_bars
from web.access import demand, deny_unless, requires
from web.htmx import is_htmx, refresh_when_finished
from web.paging import paginate

SYNC_POLL_STATUSES = frozenset(
    {
        Host.SyncStatus.STARTING,
        Host.SyncStatus.CHECKING,
        Host.SyncStatus.QUEUED,
        Host.SyncStatus.RUNNING,
    }
)
#: Rows per page of the host page's VM table and of its VM memory per cell: a host with a
#: thousand VMs would otherwise ship (and render) a thousand rows of each.
VM_PAGE_SIZE = 50
#: Hosts per page of the hosts list (the dashboard).
HOST_PAGE_SIZE = 50


@require_safe
@requires(roles.VIEW_HOST)
def host_list(request: HttpRequest) -> HttpResponse:
    """The dashboard: active hosts by name, HOST_PAGE_SIZE a page, filtered by name and sync
    state; the drift summary counts the whole fleet."""
    host_filter = HostFilter(request.GET, queryset=Host.objects.all())
    rows = vm_selectors.dashboard_rows(filter_results(host_filter))
    page, query = paginate(request, rows, HOST_PAGE_SIZE)
    return render(
        request,
        "hosts/host_list.html",
        {
            "filter": host_filter,
            "page": page,
            "query": query,
            "hosts": vm_selectors.with_cell_memory(page.object_list),
            **vm_selectors.fleet_drift_totals(),
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
@requires(roles.ADD_HOST)
def host_add(request: HttpRequest) -> HttpResponse:
    form = HostRegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            host = requests.register_from_form(form.cleaned_data, actor=request.user)
        except ValidationError as exc:
            # The validator's own words, next to the field they are about.
            form.add_error(None, exc)
        else:
            # register_host queued the connection test and first sync (on commit): nothing
            # here waited for the host. The host page follows the test and shows its answer.
            messages.success(
                request,
                f"Host {host.name} saved; a worker is testing the connection to {host.uri} "
                "(libvirt's answer appears below), then syncs it.",
            )
            return redirect(host)
    return render(request, "hosts/host_form.html", {"form": form})


def _distance_context(topology, request: HttpRequest) -> dict:
    if topology is None or not topology.cells:
        return {"distance_ids": [], "distance_rows": [], "chosen_cell": None}
    ids, rows = distance_matrix(topology)
    ids = list(ids)
    form = CellChoiceForm(request.GET or None, cell_ids=ids)
    chosen = form.chosen(default=ids[0] if ids else None)
    if chosen not in ids:
        chosen = ids[0] if ids else None
    classes = distance_classes(topology, chosen) if chosen is not None else {}
    labelled = [
        {
            "cell": row_id,
            "chosen": row_id == chosen,
            "values": [
                {
                    "cell": col_id,
                    "value": value,
                    "kind": classes.get(col_id, "unknown") if row_id == chosen else "",
                }
                for col_id, value in zip(ids, row, strict=False)
            ],
        }
        for row_id, row in zip(ids, rows, strict=False)
    ]
    kinds = [{"cell": c, "kind": classes.get(c, "unknown")} for c in ids]
    return {
        "distance_ids": ids,
        "distance_rows": labelled,
        "distance_kinds": kinds,
        "chosen_cell": chosen,
        "cell_form": form,
    }


@require_safe
@requires(roles.VIEW_HOST)
def host_detail(request: HttpRequest, name: str) -> HttpResponse:
    host = get_object_or_404(Host, name=name)
    topology = services.load_topology(host)
    cells, cpus_by_cell = selectors.host_cells(host)
    host_cpus = frozenset(cpu for ids in cpus_by_cell.values() for cpu in ids)
    diagram_vms = vm_selectors.diagram_vms(host, host_cpus)
    diagram = None
    summary = None
    if topology is not None:
        summary = lscpu_summary(topology)
        # hosts.diagram escapes every name it draws; its output is the one |safe on the site.
        diagram = mark_safe(  # noqa: S308
            render_topology_svg(
                topology,
                diagram_vms,
                selectors.cell_memory(cells),
                # collapsed cells load their drawing (host_cell) when opened
                cell_url=lambda cell_id: reverse("hosts:cell", args=[host.name, cell_id]),
            )
        )
    # The tables show a page of VMs each: only that page's rows are read as models.
    vm_page, vm_query = paginate(request, vm_selectors.host_vm_rows(host), VM_PAGE_SIZE)
    memory_page, memory_query = paginate(
        request,
        vm_selectors.host_vm_rows(host, with_memory=True),
        VM_PAGE_SIZE,
        param="memory_page",
    )
    context = {
        "host": host,
        "summary": summary,
        "summary_cells": summary.cells if summary else [],
        "diagram": diagram,
        "cells": selectors.cell_usage(cells, cpus_by_cell),
        "vm_page": vm_page,
        "vm_query": vm_query,
        "cpu_count": len(host_cpus),
        "memory_page": memory_page,
        "memory_query": memory_query,
        "memory_bars": memory_bars(memory_page.object_list),
        "balancing_changes": numa_balancing.recent_changes(host),
        # its least-local VMs now, flagged under the host's threshold (one query each)
        "least_local": locality_thresholds.least_local(host),
        "locality_below_count": locality_thresholds.below_threshold_count(host),
        "locality_threshold": locality_thresholds.threshold_for(host),
        **_sync_context(host),
        **_distance_context(topology, request),
    }
    return render(request, "hosts/host_detail.html", context)


@require_safe
@requires(roles.VIEW_HOST)
def host_cell(request: HttpRequest, name: str, cell_id: int) -> HttpResponse:
    """One cell's drawing, for htmx when a collapsed cell of the host page's diagram opens."""
    host = get_object_or_404(Host, name=name)
    topology = services.load_topology(host)
    if topology is None or cell_id not in topology.cell_ids:
        raise Http404(f"host {host.name} has no NUMA cell {cell_id}")
    # The markup as hosts.diagram writes it (it escapes every name, as for the host page).
    return HttpResponse(render_cell_svg(topology, vm_selectors.diagram_vms(host), cell_id))


@require_safe
@requires(roles.VIEW_HOST)
def host_distances(request: HttpRequest, name: str) -> HttpResponse:
    """The distance matrix alone, for htmx when the operator picks another cell."""
    host = get_object_or_404(Host, name=name)
    context = {"host": host, **_distance_context(services.load_topology(host), request)}
    return render(request, "hosts/_distances.html", context)


#: The history page's charts: (key in History.as_json(), unit). Counters are rates per cell.
NUMASTAT_CHARTS: tuple[tuple[str, str], ...] = (
    *((name, "pages/s") for name in numastat.CHARTED),
    ("local_ratio", "%"),
)
FREE_MEMORY_EXPLANATION = "free memory of this cell as libvirt reports it (getCellsFreeMemory)."


@require_safe
@requires(roles.VIEW_HOST)
def host_numastat(request: HttpRequest, name: str) -> HttpResponse:
    """numastat history: rates per cell over a window, local ratio, free memory, latest values."""
    host = get_object_or_404(Host, name=name)
    window_key = request.GET.get("window", "")
    if window_key not in numastat_history.WINDOWS:
        window_key = (
            numastat_history.DEFAULT_WINDOW
        )  # unknown or missing: the default, not an error
    history = numastat_history.history(host, window_key)
    latest = numastat_history.latest(host)  # None once raw samples are pruned; rollups may remain
    context = {
        "host": host,
        "windows": list(numastat_history.WINDOWS.values()),
        "window": history.window,
        "history": history,
        "chart_data": history.as_json(),
        "counter_charts": [
            {"key": key, "unit": unit, "explanation": numastat.EXPLANATIONS[key]}
            for key, unit in NUMASTAT_CHARTS
        ],
        "free_explanation": FREE_MEMORY_EXPLANATION,
        "local_ratio_explanation": numastat.EXPLANATIONS["local_ratio"],
        "bucket_label": _duration_label(history.window.bucket_s),
        "latest": latest,
        "ever_sampled": bool(history.cells) or latest is not None or host.cell_rollups.exists(),
    }
    return render(request, "hosts/host_numastat.html", context)


def _duration_label(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


@require_safe
@requires(roles.VIEW_HOST)
def host_sync_status(request: HttpRequest, name: str) -> HttpResponse:
    host = get_object_or_404(Host, name=name)
    response = render(request, "hosts/_sync_status.html", _sync_context(host))
    # A poll that sees the sync end reloads the page so that the new topology and VMs show.
    refresh_when_finished(request, response, host.sync_status in SYNC_POLL_STATUSES)
    return response


def _sync_context(host: Host) -> dict:
    return {
        "host": host,
        "polling": host.sync_status in SYNC_POLL_STATUSES,
        "check_timeout": settings.NUMAPORTAL_LIBVIRT_TIMEOUT,
    }


@require_POST
@requires(roles.VIEW_HOST)
def host_sync(request: HttpRequest, name: str) -> HttpResponse:
    host = get_object_or_404(Host.objects.active(), name=name)
    demand(request.user, roles.CHANGE_HOST)
    # A host that never passed its connection test is tested again; one whose sync is
    # already queued or running gets no second one: the page shows (and polls) that one.
    outcome = requests.request_sync(host, actor=request.user)
    host.refresh_from_db()
    if is_htmx(request):
        return render(request, "hosts/_sync_status.html", _sync_context(host))
    if outcome is requests.SyncRequest.PENDING:
        messages.info(
            request,
            f"A sync of {host.name} is already pending ({host.get_sync_status_display()}): "
            "no second one was queued.",
        )
    elif outcome is requests.SyncRequest.CHECK_QUEUED:
        messages.info(request, f"Connection test of {host.name} queued.")
    else:
        messages.info(request, f"Sync of {host.name} queued.")
    return redirect(host)


@require_http_methods(["GET", "HEAD", "POST"])
@requires(roles.VIEW_HOST)
def host_remove(request: HttpRequest, name: str) -> HttpResponse:
    host = get_object_or_404(Host.objects.active(), name=name)
    demand(request.user, roles.DELETE_HOST)
    if request.method == "POST":
        if services.remove_host(host, actor=request.user):
            messages.success(
                request,
                f"Host {host.name} forgotten: it never connected; its name is free again.",
            )
        else:
            messages.success(
                request, f"Host {host.name} removed from the portal; its VMs and history are kept."
            )
        return redirect("hosts:list")
    vm_count = host.vms.count()
    return render(request, "hosts/host_confirm_remove.html", {"host": host, "vm_count": vm_count})


@require_http_methods(["GET", "HEAD", "POST"])
@requires(roles.VIEW_HOST)
def host_numa_balancing(request: HttpRequest, name: str) -> HttpResponse:
    """Confirm and queue a switch of the host's numa_balancing (admins only; see
    :mod:`changes.kinds.numa_balancing`). GET shows the current and the new value; POST acts."""
    host = get_object_or_404(Host, name=name)
    deny_unless(
        numa_balancing.can_switch(request.user),
        "switching numa_balancing is for admins (superuser) only",
    )
    current = host.numa_balancing
    form = NumaBalancingForm(request.POST or None, initial={"value": 0 if current else 1})
    if request.method == "POST" and form.is_valid():
        try:
            change = request_numa_balancing(
                host, form.cleaned_data["value"], form.cleaned_data["reason"], request.user
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request,
                f"numa_balancing of {host.name} -> {change.params['value']} queued "
                f"({numa_balancing.LIVE_ONLY}).",
            )
            return redirect(change)
    context = {
        "host": host,
        "form": form,
        "current": numa_balancing.describe_value(current),
        "unavailable": numa_balancing.unavailable_reason(host),
        "live_only": numa_balancing.LIVE_ONLY,
        "recent": numa_balancing.recent_changes(host),
    }
    return render(request, "hosts/host_numa_balancing.html", context)
