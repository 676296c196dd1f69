"""Balancing over the API, through the pages' forms and services:

- ``/api/v1/plans/``: the plans (the plans page's filter), one plan; ``POST`` requests a plan
  of a host (:func:`balancing.requests.request_plan`, computed by a worker: poll ``status``),
  ``POST /api/v1/plans/{id}/approve/`` approves a ready one with a reason, as the plan page's
  button does (:func:`balancing.requests.approve_plan`: staleness checked, one change record
  per move, applied by a worker). Reading needs the viewer role, planning and approving the
  operator's (``changes.add_change``).
- ``/api/v1/policies/{host}/``: a host's balancing policy, read and saved (``PUT``; ``PATCH``
  for some fields) through the policy form and :func:`balancing.policies.update_policy`, which
  writes its ``balancing_policy`` change record; admins only, as the page.
- ``POST /api/v1/hosts/{host}/numa-balancing/``: switch the host's kernel numa_balancing
  (:func:`changes.requests.request_numa_balancing`), admins only, as the page.

As on the pages, an object that is not there is a 404 before a role that may see it but not
act on it gets its 403.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import validation_error
from api.parameters import host_name
from api.serializers.balancing import (
    ApproveSerializer,
    NumaBalancingSerializer,
    PlanDetailSerializer,
    PlanRequestSerializer,
    PlanSerializer,
    PolicySerializer,
    PolicyWriteSerializer,
)
from api.serializers.changes import ChangeSerializer
from balancing import access as plan_access
from balancing import policies as plan_policies
from balancing import requests as plan_requests
from balancing import selectors
from balancing.forms import ApproveForm, PolicyForm
from balancing.models import BalancingPlan, BalancingPolicy
from changes.forms.numa_balancing import NumaBalancingForm
from changes.kinds import numa_balancing
from changes.models import Change
from changes.requests import request_numa_balancing
from hosts.models import Host
from numaportal import roles

__all__ = ["NumaBalancingView", "PlanViewSet", "PolicyViewSet", "switch_numa_balancing"]


def _form_errors(form: Any) -> ValidationError:
    return ValidationError(form.errors.as_data())


def _plain(data: Any) -> dict[str, Any]:
    """A request body as a dict of values (a form-encoded body's last value of each key)."""
    if hasattr(data, "getlist"):
        return {key: data.get(key) for key in data}
    return dict(data) if isinstance(data, dict) else {}


# --- plans -------------------------------------------------------------------------------------


class PlanViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Balancing plans, newest first (``host``, ``status``, ``trigger`` as on the plans
    page)."""

    filterset_class = selectors.PlanFilter
    read_permission = roles.VIEW_CHANGE
    write_permission = {"create": plan_access.PLAN_PERMISSION, "approve": roles.VIEW_CHANGE}

    def get_queryset(self) -> QuerySet[BalancingPlan]:
        return selectors.plans()

    def get_serializer_class(self) -> type:
        return PlanSerializer if self.action == "list" else PlanDetailSerializer

    def _answer(self, plan: BalancingPlan, code: int) -> Response:
        plan = self.get_queryset().get(pk=plan.pk)
        context = self.get_serializer_context()
        return Response(PlanDetailSerializer(plan, context=context).data, status=code)

    @extend_schema(request=PlanRequestSerializer, responses={201: PlanDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Plan balancing of a host: the plan is written ``computing`` and a worker computes
        it (poll ``status``: ``ready`` waits for approval). While a plan of the host is still
        computing, that plan is the answer."""
        body = PlanRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        host = Host.objects.active().filter(name=body.validated_data["host"]).first()
        if host is None:
            name = body.validated_data["host"]
            raise validation_error(
                ValidationError({"host": [f"no host named {name!r} in the portal"]})
            )
        plan = plan_requests.request_plan(host=host, actor=request.user)
        return self._answer(plan, status.HTTP_201_CREATED)

    @extend_schema(request=ApproveSerializer, responses={202: PlanDetailSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        """Approve a ready plan, as the plan page's button: refused when it is not waiting
        for approval or is stale (the inventory changed since: it is then marked stale);
        otherwise one change record per move (``changes``), applied in order by a worker."""
        plan = self.get_object()
        if not plan_access.can_plan(request.user):
            raise PermissionDenied(
                f"{request.user.get_username()} may not plan or approve balancing "
                "(operator role required)"
            )
        form = ApproveForm(_plain(request.data))
        if not form.is_valid():
            raise _form_errors(form)
        plan_requests.approve_plan(
            plan=plan, actor=request.user, reason=form.cleaned_data["reason"]
        )
        return self._answer(plan, status.HTTP_202_ACCEPTED)


# --- policies ----------------------------------------------------------------------------------


class PolicyViewSet(viewsets.GenericViewSet):
    """A host's balancing policy, by the host's name (admins only, as the policy page)."""

    lookup_field = "name"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    serializer_class = PolicySerializer
    read_permission = roles.VIEW_CHANGE
    # Checked after the host was found (404 first), as the page: see _host().
    write_permission = {"update": roles.VIEW_CHANGE, "partial_update": roles.VIEW_CHANGE}

    def get_queryset(self) -> QuerySet[Host]:
        return Host.objects.active()

    def _host(self) -> Host:
        host = get_object_or_404(self.get_queryset(), name=self.kwargs["name"])
        if not plan_access.can_edit_policy(self.request.user):
            raise PermissionDenied("balancing policies are for admins (superuser) only")
        return host

    @staticmethod
    def _policy(host: Host) -> BalancingPolicy:
        return BalancingPolicy.objects.filter(host=host).first() or BalancingPolicy(host=host)

    def retrieve(self, request: Request, name: str) -> Response:
        """The host's policy (the defaults while none was saved)."""
        return Response(PolicySerializer(self._policy(self._host())).data)

    @extend_schema(request=PolicyWriteSerializer, responses={200: PolicySerializer})
    def update(self, request: Request, name: str, partial: bool = False) -> Response:
        """Save the policy with a reason, as the policy form: every value checked against the
        host, a ``balancing_policy`` change record written (none when nothing changed)."""
        host = self._host()
        instance = self._policy(host)
        data = _plain(request.data)
        if partial:
            data = {**plan_policies.policy_values(instance), **data}
        form = PolicyForm(data, instance=instance, host=host)
        if not form.is_valid():
            raise _form_errors(form)
        policy = plan_policies.update_policy(
            host=host,
            actor=request.user,
            values=form.cleaned_data,
            reason=form.cleaned_data["reason"],
        )
        return Response(PolicySerializer(policy).data)

    @extend_schema(request=PolicyWriteSerializer, responses={200: PolicySerializer})
    def partial_update(self, request: Request, name: str) -> Response:
        """Change some of the policy's fields (the others as saved), with a reason."""
        return self.update(request, name, partial=True)


# --- numa_balancing ----------------------------------------------------------------------------


def switch_numa_balancing(request: Request, host: Host, value: Any, reason: Any) -> Change:
    """The numa_balancing page's path: admins only, the page's form, then the service."""
    if not numa_balancing.can_switch(request.user):
        raise PermissionDenied("switching numa_balancing is for admins (superuser) only")
    form = NumaBalancingForm({"value": value, "reason": reason})
    if not form.is_valid():
        raise _form_errors(form)
    return request_numa_balancing(
        host, form.cleaned_data["value"], form.cleaned_data["reason"], request.user
    )


class NumaBalancingView(generics.GenericAPIView):
    """Switch the host's /proc/sys/kernel/numa_balancing (0 or 1), live only; admins only."""

    serializer_class = NumaBalancingSerializer
    read_permission = roles.VIEW_HOST
    # Checked after the host was found (404 first), as the page: see switch_numa_balancing.
    write_permission = roles.VIEW_HOST

    @extend_schema(
        parameters=[host_name("name")],
        request=NumaBalancingSerializer,
        responses={201: ChangeSerializer},
    )
    def post(self, request: Request, name: str) -> Response:
        """Recorded ``queued`` and written by the host's own worker: the answer is the
        change record (poll its ``url``)."""
        host = get_object_or_404(Host, name=name)
        data = _plain(request.data)
        change = switch_numa_balancing(request, host, data.get("value"), data.get("reason"))
        context = self.get_serializer_context()
        return Response(
            ChangeSerializer(change, context=context).data, status=status.HTTP_201_CREATED
        )
