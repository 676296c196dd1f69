"""VM pages: the list across hosts (filtered) and one VM's placement, as virsh shows it."""

from __future__ import annotations

import uuid as uuid_module
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from balancing import locality as locality_thresholds
from changes import forms as change_forms
from changes.models import Change
from changes.requests import request_change, set_vm_flags
from hosts import history as numastat_history
from hosts import selectors
from hosts.services import load_topology
from numaportal import roles
from numaportal.bounds import filter_results, parse_whole
from numaportal.forms import add_service_errors
from numaportal.virt.cpuset import format_cpuset
from vms import forms, locality_history
from vms import selectors as vm_selectors
from vms.filters import SORT_FIELDS, VirtualMachineFilter
from vms.memory import memory_bar
from vms.models import VirtualMachine
from web.access import demand, requires
from web.paging import paginate, sort_links

PAGE_SIZE = 100


@require_safe
@requires(roles.VIEW_VM)
def vm_list(request: HttpRequest) -> HttpResponse:
    queryset = vm_selectors.host_vm_filter(VirtualMachine.objects.all())
    vm_filter = VirtualMachineFilter(request.GET, queryset=queryset)
    page, query = paginate(request, filter_results(vm_filter), PAGE_SIZE, keys=True)
    return render(
        request,
        "vms/vm_list.html",
        {
            "filter": vm_filter,
            "page": page,
            "vms": page.object_list,
            "query": query,
            "sort_links": sort_links(request, [word for _, word in SORT_FIELDS]),
        },
    )


@require_safe
@requires(roles.VIEW_VM)
def vm_detail(request: HttpRequest, host_name: str, uuid) -> HttpResponse:
    vm = vm_selectors.vm_with_vcpus(host_name, uuid).first()
    if vm is None:
        raise Http404("No such VM on this host.")
    width, cell_of = selectors.host_cpu_map(vm.host)
    context = {
        "vm": vm,
        "host": vm.host,
        "vcpu_rows": vm_selectors.vcpuinfo_rows(vm, width, cell_of),
        "strip_width": width,
        "recent_changes": recent_changes(vm),
        "memory_bars": [bar] if (bar := memory_bar(vm)) else [],
        "flags_form": forms.BalancingFlagsForm(instance=vm),
        "change_forms": [(f.slug, f.title) for f in change_forms.FORMS.values()],
        **_locality_context(request, vm),
    }
    return render(request, "vms/vm_detail.html", context)


def _locality_context(request: HttpRequest, vm: VirtualMachine) -> dict:
    """The VM's locality now (flagged under its host's threshold) and its history chart, over
    the numastat history's windows (``?window=``; unknown or missing: the default)."""
    window_key = request.GET.get("window", "")
    if window_key not in numastat_history.WINDOWS:
        window_key = numastat_history.DEFAULT_WINDOW
    now = locality_history.locality_now(vm)
    threshold = locality_thresholds.threshold_for(vm.host)
    history = locality_history.history(vm, window_key)
    chart = history.as_json()
    chart["threshold"] = threshold
    chart["home_cells"] = sorted(selectors.safe_nodeset(vm.cells))
    return {
        "locality_now": now,
        "locality_threshold": threshold,
        "locality_below": now is not None and now.locality is not None and now.locality < threshold,
        "locality_history": history,
        "locality_chart": chart,
        "windows": list(numastat_history.WINDOWS.values()),
    }


RECENT_CHANGES = 10


def recent_changes(vm: VirtualMachine) -> list[Change]:
    """The VM's last changes, newest first."""
    return list(Change.objects.recent_for_vm(vm, RECENT_CHANGES))


# --- change forms -----------------------------------------------------------------------------

# Change forms need the operator's permission for GET too: a viewer does not even see them
# (403 once the VM was found; an unknown or gone VM is 404 first, see web.access).


def _load_vm(host_name: str, uuid) -> VirtualMachine:
    vm = vm_selectors.vm_with_vcpus(host_name, uuid).first()
    if vm is None:
        raise Http404("No such VM on this host.")
    if vm.gone_at is not None or vm.host.removed_at is not None:
        raise Http404("This VM is gone from its host: nothing to change.")
    return vm


def _helper_pins(request: HttpRequest, form_class, vm, topology) -> dict[int, str]:
    """Pins proposed by the helper links of the vCPU pinning form (?fill=cell|cores&cell=N)."""
    fill = request.GET.get("fill")
    if form_class is not change_forms.VcpuPinForm or fill not in ("cell", "cores"):
        return {}
    count = max(vm.vcpu_max_config, vm.vcpu_max_live or 0)
    cell = parse_whole(request.GET.get("cell", ""))  # ASCII digits; anything else: no cell
    if cell is not None and cell not in topology.cell_ids:
        cell = None
    try:
        if fill == "cell" and cell is not None:
            return change_forms.pin_all_into_cell(topology, cell, count)
        if fill == "cores":
            return change_forms.one_vcpu_per_core(topology, count, cell)
    except (KeyError, ValueError):
        return {}
    return {}


@require_http_methods(["GET", "HEAD", "POST"])
@requires(roles.VIEW_VM)
def vm_change(request: HttpRequest, host_name: str, uuid, kind: str) -> HttpResponse:
    """One change form: fill in -> preview (before -> after) -> confirm -> change page."""
    form_class = change_forms.FORMS.get(kind)
    if form_class is None:
        raise Http404("No such change form.")
    vm = _load_vm(host_name, uuid)
    demand(request.user, roles.ADD_CHANGE)
    topology = load_topology(vm.host)
    if topology is None:
        raise Http404("The host has not been synced yet: its topology is unknown.")
    step = "form"
    if request.method == "POST":
        form = form_class(request.POST, vm=vm, topology=topology)
        # "edit" goes back to the filled-in form (bound to the same, already valid, data).
        if "edit" not in request.POST and form.is_valid():
            if "confirm" in request.POST:
                redirect_to = _request_changes(request, form)
                if redirect_to is not None:
                    return redirect(redirect_to)
            else:
                step = "preview"
    else:
        form = (
            form_class(
                vm=vm,
                topology=topology,
                initial_pins=_helper_pins(request, form_class, vm, topology),
            )
            if form_class is change_forms.VcpuPinForm
            else form_class(vm=vm, topology=topology)
        )
    width, cell_of = selectors.host_cpu_map(vm.host)
    context = {
        "vm": vm,
        "host": vm.host,
        "form": form,
        "kind": kind,
        "step": step,
        "preview": form.preview() if step == "preview" else None,
        "change_forms": [(f.slug, f.title) for f in change_forms.FORMS.values()],
        "cells": [
            {"id": c.id, "cpus": format_cpuset(c.cpu_ids) if c.cpu_ids else "memory only"}
            for c in topology.cells
        ],
        "vcpu_rows": vm_selectors.vcpuinfo_rows(vm, width, cell_of),
        "strip_width": width,
        "strict_refusal": change_forms.STRICT_LIVE_REFUSAL,
        "unplug_refusal": change_forms.UNPLUG_REFUSAL,
    }
    return render(request, "vms/vm_change.html", context)


def _request_changes(request: HttpRequest, form: change_forms.ChangeForm) -> str | None:
    """request_change for every record of the form, in one transaction and one group.

    Returns where to go next (the change's page, or the group's list), or None when the
    service refused the input (its message is then on the form).
    """
    records = form.changes()
    group_id = uuid_module.uuid4()  # one request, one group
    created = []
    try:
        with transaction.atomic():
            for kind, params, scope in records:
                created.append(
                    request_change(
                        actor=request.user,
                        target=form.vm,
                        kind=kind,
                        params=params,
                        scope=scope,
                        reason=form.cleaned_data["reason"],
                        group_id=group_id,
                    )
                )
    except ValidationError as exc:
        add_service_errors(form, exc)
        return None
    if len(created) == 1:
        messages.success(request, "Change queued.")
        return created[0].get_absolute_url()
    messages.success(request, f"{len(created)} changes queued as one group.")
    return reverse("changes:list") + "?" + urlencode({"group": str(group_id)})


@require_POST
@requires(roles.VIEW_VM)
def vm_balancing_flags(request: HttpRequest, host_name: str, uuid) -> HttpResponse:
    """Set the VM's balancing flags (locked: plans never move it; dedicated: whole cores).

    Portal metadata, not a libvirt change: nothing on the host changes until a plan is applied.
    """
    vm = _load_vm(host_name, uuid)
    demand(request.user, roles.ADD_CHANGE)
    form = forms.BalancingFlagsForm(request.POST, instance=vm)
    if form.is_valid():
        try:
            # Saved with its vm_flags change record (form.save() would skip the record).
            change = set_vm_flags(
                actor=request.user,
                vm=vm,
                values=form.cleaned_data,
                reason=form.cleaned_data["reason"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            vm.refresh_from_db()
            state = (
                f"{vm.name}: balancing {'locked' if vm.balancing_locked else 'may move it'}, "
                f"{'dedicated cores' if vm.dedicated else 'shared CPUs'}"
            )
            messages.success(request, f"{state}." if change else f"{state} (unchanged).")
            return redirect(vm.get_absolute_url())
    messages.error(request, "; ".join(e for errs in form.errors.values() for e in errs))
    return redirect(vm.get_absolute_url())
