"""``/api/v1/changes/``: the change history (the list page's filters, paginated), one record
(poll its ``status``), and requesting a change: ``POST`` = the change forms' checks, then
:func:`changes.requests.request_change` (a VM's change) or
:func:`changes.requests.request_numa_balancing` (a host setting, when no VM is named).

A request is checked as the change pages check it (:class:`ApiChangeForm`): the scope and the
reason by the forms' own fields, the live scope of a VM that is not running by the forms' own
rule, a cpuset or nodeset by the forms' own fields against the host's stored topology, then the
kind's validation (the one ``request_change`` applies again). So a refusal is in the forms'
words, under the field it is about; a host or VM that is not there is a 400 on ``host`` /
``vm`` (it is part of the request body, not of the URL).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import validation_error
from api.serializers.changes import ChangeRequestSerializer, ChangeSerializer
from api.views.balancing import switch_numa_balancing
from changes.filters import ChangeFilter
from changes.forms import ChangeForm, CpusetField, NodesetField
from changes.kinds.validation import validate_change
from changes.models import Change
from changes.requests import request_change
from hosts.models import Host
from hosts.services import load_topology
from numaportal import roles
from numaportal.bounds import AsciiUUIDField
from numaportal.virt.topology import HostTopology
from vms.models import VirtualMachine
from vms.selectors import vm_with_vcpus

__all__ = ["ApiChangeForm", "ChangeViewSet"]

#: The page's refusal of a VM that is gone (``web.vms.views``), here under ``vm``.
VM_GONE = "This VM is gone from its host: nothing to change."


class ApiChangeForm(ChangeForm):
    """One change of any kind, checked as the change forms check theirs: scope and reason (the
    forms' fields), a live change of a VM that is not running (the forms' rule), the
    parameters the forms ask with a cpuset or nodeset field (``cpuset``: host CPUs;
    ``nodeset``, ``cells``: the host's cells, as the numatune and memory forms know them),
    then the kind's own validation. The latter's errors are kept under the kind's own names
    (``vcpu``, ``count``, ...) in :attr:`service_errors`, where a form would move some of them
    to its own fields."""

    def __init__(
        self,
        data: dict[str, Any],
        *,
        vm: VirtualMachine,
        topology: HostTopology,
        kind: str,
        params: dict[str, Any],
    ) -> None:
        self.kind, self.params = kind, params
        self.service_errors: dict[str, list[str]] = {}
        super().__init__(data, vm=vm, topology=topology)
        cells = frozenset(cell.id for cell in topology.cells)
        id_sets = {
            "cpuset": lambda: CpusetField(host_cpus=topology.cpu_ids),
            "nodeset": lambda: NodesetField(cells=cells),
            "cells": lambda: NodesetField(cells=cells),
        }
        for name, field in id_sets.items():
            if name in params:
                self.fields[name] = field()

    def changes(self) -> list[tuple[str, dict, str]]:
        cleaned = {name: self.cleaned_data[name] for name in self.params if name in self.fields}
        return [(self.kind, {**self.params, **cleaned}, self.cleaned_data["scope"])]

    def _validate_with_service(self, kind: str, params: dict, scope: str) -> None:
        try:
            self.validated.append((kind, validate_change(self.vm, kind, params, scope), scope))
        except ValidationError as exc:
            self.service_errors = exc.message_dict
            self.add_error(None, [])  # invalid, the reasons being in service_errors

    def api_errors(self) -> ValidationError:
        """The form's errors and the kind's, keyed as the API answers them."""
        errors = {name: list(messages) for name, messages in self.errors.items() if messages}
        for name, messages in self.service_errors.items():
            errors.setdefault(name, []).extend(messages)
        return ValidationError(errors)


def _find_vm(host: Host, vm_text: str) -> VirtualMachine:
    """The VM named by the request on *host*, or a 400 on ``vm`` (the page's 404)."""
    try:
        uuid = AsciiUUIDField().clean(vm_text)
    except ValidationError as exc:
        raise ValidationError({"vm": exc.messages}) from None
    vm = vm_with_vcpus(host.name, str(uuid)).first()
    if vm is None:
        raise ValidationError({"vm": [f"no VM {uuid} on host {host.name}"]})
    if vm.gone_at is not None or vm.host.removed_at is not None:
        raise ValidationError({"vm": [VM_GONE]})
    return vm


def request_vm_change(request: Request, host: Host, data: dict[str, Any]) -> Change:
    """The change form's path for one record: the checks, then ``request_change``."""
    vm = _find_vm(host, data["vm"])
    topology = load_topology(vm.host)
    params = data["params"]
    if topology is None:
        # The page has no form for such a VM; the service says why.
        return request_change(
            actor=request.user,
            target=vm,
            kind=data["kind"],
            params=params,
            scope=data["scope"],
            reason=data["reason"],
        )
    form = ApiChangeForm(
        {**params, "scope": data["scope"], "reason": data["reason"]},
        vm=vm,
        topology=topology,
        kind=data["kind"],
        params=params,
    )
    if not form.is_valid():
        raise form.api_errors()
    [(kind, checked, scope)] = form.changes()
    return request_change(
        actor=request.user,
        target=vm,
        kind=kind,
        params=checked,
        scope=scope,
        reason=form.cleaned_data["reason"],
    )


EXAMPLE = OpenApiExample(
    "pin vCPU 0",
    request_only=True,
    value={
        "host": "lab",
        "vm": "6695eb01-f6a4-8304-79aa-97f2502e193f",
        "kind": "vcpupin",
        "params": {"vcpu": 0, "cpuset": "1"},
        "scope": "live",
        "reason": "pin the database's vCPU 0",
    },
)


class ChangeViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """The change records, newest first (the change list's filters: ``host``, ``vm`` (id),
    ``target``, ``actor``, ``kind``, ``status``, ``created_after`` / ``created_before``, ``q``,
    ``group``); a bad filter value is a 400 naming it."""

    serializer_class = ChangeSerializer
    filterset_class = ChangeFilter
    read_permission = roles.VIEW_CHANGE
    write_permission = {"create": roles.ADD_CHANGE}

    def get_queryset(self) -> QuerySet[Change]:
        return Change.objects.select_related("host", "vm").order_by("-created_at", "-pk")

    @extend_schema(
        request=ChangeRequestSerializer,
        responses={201: ChangeSerializer},
        examples=[EXAMPLE],
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Request a change: recorded ``queued`` and handed to a worker; the answer is the
        record, whose ``status`` (``GET`` its ``url``) ends ``succeeded`` or ``failed``."""
        body = ChangeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        host = Host.objects.filter(name=data["host"]).first()
        if host is None:
            raise validation_error(
                ValidationError({"host": [f"no host named {data['host']!r} in the portal"]})
            )
        if data.get("vm"):
            change = request_vm_change(request, host, data)
        elif data["kind"] == Change.Kind.NUMA_BALANCING:
            change = switch_numa_balancing(
                request, host, data["params"].get("value"), data["reason"]
            )
        else:
            raise validation_error(
                ValidationError({"vm": [f"a {data['kind']} change needs the VM's UUID"]})
            )
        # The record as written (queued): a fast worker may have run it already; poll its url.
        return Response(
            ChangeSerializer(change, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )
