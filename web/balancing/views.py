"""Balancing pages: the plans list, one plan (before / after, scores, changes, approval), the
"Plan balancing" action of a host, and a host's balancing policy.

Views stay thin: writes go through :mod:`balancing.services` (which checks the role again),
reads through :mod:`balancing.selectors`. Seeing plans needs ``changes.view_change`` (the
"viewer" group: a plan is a set of proposed changes); planning and approving need
``changes.add_change`` (the "operator" group), checked once the host or plan was found (404
first, see :mod:`web.access`); policies are for superusers.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from balancing import access as plan_access
from balancing import change_list, selectors
from balancing import policies as plan_policies
from balancing import requests as plan_requests
from balancing.forms import ApproveForm, PolicyForm
from balancing.models import BalancingPlan, BalancingPolicy
from hosts.models import Host
from hosts.services import load_topology
from numaportal import roles
from numaportal.bounds import filter_results
from numaportal.forms import add_service_errors
from web.access import demand, deny_unless, requires
from web.htmx import refresh_when_finished
from web.paging import paginate

PAGE_SIZE = 50


@require_safe
@requires(roles.VIEW_CHANGE)
def plan_list(request: HttpRequest) -> HttpResponse:
    plan_filter = selectors.PlanFilter(request.GET, queryset=selectors.plans())
    page, query = paginate(request, filter_results(plan_filter), PAGE_SIZE)
    host = None
    if plan_filter.is_valid():
        host = plan_filter.form.cleaned_data.get("host")
    return render(
        request,
        "balancing/plan_list.html",
        {
            "filter": plan_filter,
            "page": page,
            "plans": page.object_list,
            "query": query,
            "for_host": host,
            "can_plan": plan_access.can_plan(request.user),
            "can_edit_policy": plan_access.can_edit_policy(request.user),
        },
    )


def _status_context(plan: BalancingPlan) -> dict:
    changes = list(selectors.plan_changes(plan)) if plan.approved_at else []
    return {
        "plan": plan,
        "changes": changes,
        "polling": plan.status in selectors.ACTIVE_STATUSES,
    }


def _plan_context(request: HttpRequest, plan: BalancingPlan, form: ApproveForm | None) -> dict:
    topology = load_topology(plan.host)
    content = selectors.plan_content(plan)
    vms = selectors.present_vms(plan.host)
    vm_urls = {name: vm.get_absolute_url() for name, vm in vms.items()}
    can_approve = plan.status == BalancingPlan.Status.READY and plan_access.can_plan(request.user)
    if can_approve and form is None:
        form = ApproveForm()
    return {
        **_status_context(plan),
        "host": plan.host,
        "topology_known": topology is not None,
        "diagrams": (
            selectors.diagrams(plan, topology, content, vms) if topology is not None else None
        ),
        "score_rows": selectors.score_rows(plan),
        "improvement": selectors.improvement_text(plan),
        "policy_rows": selectors.policy_rows(plan.policy or {}),
        "change_rows": change_list.change_rows(plan, content, vm_urls, vms),
        "form": form if can_approve else None,
        "can_plan": plan_access.can_plan(request.user),
        "vm_count": len(content.demands),
    }


@require_safe
@requires(roles.VIEW_CHANGE)
def plan_detail(request: HttpRequest, pk) -> HttpResponse:
    plan = get_object_or_404(BalancingPlan.objects.select_related("host"), pk=pk)
    return render(request, "balancing/plan_detail.html", _plan_context(request, plan, None))


@require_safe
@requires(roles.VIEW_CHANGE)
def plan_status(request: HttpRequest, pk) -> HttpResponse:
    """The status box (and, once approved, the change records) for htmx polling."""
    plan = get_object_or_404(BalancingPlan.objects.select_related("host"), pk=pk)
    context = _status_context(plan)
    response = render(request, "balancing/_plan_status.html", context)
    # A poll that sees the plan computed (or applied) reloads the page to show the rest.
    refresh_when_finished(request, response, context["polling"])
    return response


@require_POST
@requires(roles.VIEW_CHANGE)
def plan_request(request: HttpRequest, name: str) -> HttpResponse:
    """ "Plan balancing" on a host page: a new plan, computed by a worker; its page follows."""
    host = get_object_or_404(Host.objects.active(), name=name)
    demand(request.user, roles.ADD_CHANGE)
    try:
        plan = plan_requests.request_plan(host=host, actor=request.user)
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
        return redirect(host)
    return redirect(plan)


@require_POST
@requires(roles.VIEW_CHANGE)
def plan_approve(request: HttpRequest, pk) -> HttpResponse:
    plan = get_object_or_404(BalancingPlan.objects.select_related("host"), pk=pk)
    demand(request.user, roles.ADD_CHANGE)
    form = ApproveForm(request.POST)
    if form.is_valid():
        try:
            changes = plan_requests.approve_plan(
                plan=plan, actor=request.user, reason=form.cleaned_data["reason"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request,
                f"Plan approved: {len(changes)} change{'s' if len(changes) != 1 else ''} "
                f"queued on host {plan.host.name}.",
            )
            return redirect(plan)
    plan.refresh_from_db()
    context = _plan_context(request, plan, form)
    if context["form"] is None:
        # No longer approvable (stale, or approved meanwhile): say why above the plan.
        context["refusal"] = form.non_field_errors()
    return render(request, "balancing/plan_detail.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
@requires(roles.VIEW_CHANGE)
def policy_edit(request: HttpRequest, name: str) -> HttpResponse:
    host = get_object_or_404(Host.objects.active(), name=name)
    deny_unless(
        plan_access.can_edit_policy(request.user),
        "balancing policies are for admins (superuser) only",
    )
    instance = BalancingPolicy.objects.filter(host=host).first() or BalancingPolicy(host=host)
    form = PolicyForm(request.POST or None, instance=instance, host=host)
    if request.method == "POST" and form.is_valid():
        try:
            policy = plan_policies.update_policy(
                host=host,
                actor=request.user,
                values=form.cleaned_data,
                reason=form.cleaned_data["reason"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request, f"Balancing policy of {host.name} saved: {policy.get_mode_display()}."
            )
            return redirect("balancing:policy", name=host.name)
    topology = load_topology(host)
    recent = selectors.plans().filter(host=host)[:10]
    return render(
        request,
        "balancing/policy_form.html",
        {
            "host": host,
            "form": form,
            "exists": instance.pk is not None,
            "cells": selectors.cell_rows(topology),
            "recent": recent,
        },
    )
