"""``/api/v1/vms/``: the VM list with the VM list page's filters (its django-filter FilterSet,
the same query parameters; a bad value is a 400 naming the field), and
``/api/v1/vms/{host}/{uuid}/``: one VM as the VM page shows it, from the page's selectors.
Viewers read both (``vms.view_virtualmachine``)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from api.parameters import host_name
from api.serializers.vms import VmDetailSerializer, VmSerializer
from balancing import locality as locality_thresholds
from hosts import selectors
from numaportal import roles
from vms import locality_history
from vms import selectors as vm_selectors
from vms.filters import VirtualMachineFilter
from vms.memory import memory_bar
from vms.models import VirtualMachine

__all__ = ["HOST_NAME", "VmDetailView", "VmListView"]

#: A host's name in a path (Django's ``<slug:>``), for the schema.
HOST_NAME = host_name("host")


def _yes_no(name: str, words: str) -> OpenApiParameter:
    # The FilterSet's yes/no filters take the words "true" / "false" ("" or none: any), which
    # drf-spectacular would describe as a boolean whose values are strings.
    return OpenApiParameter(name, OpenApiTypes.STR, enum=["true", "false"], description=words)


@extend_schema_view(
    get=extend_schema(
        parameters=[
            OpenApiParameter("host", OpenApiTypes.STR, description="a host's name"),
            _yes_no("cross_node", "vCPUs or memory on more than one cell"),
            _yes_no("drift", "live tuning differs from the config (live-only: lost at shutdown)"),
            _yes_no("changed_outside", "tuning changed outside the portal since its last change"),
        ]
    )
)
class VmListView(generics.ListAPIView):
    """VMs across hosts, by host and name; gone VMs only with ``include_gone``. The query
    parameters are the VM list page's (``host`` is a host's name)."""

    read_permission = roles.VIEW_VM
    serializer_class = VmSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = VirtualMachineFilter

    def get_queryset(self) -> QuerySet[VirtualMachine]:
        # The page's rows (host joined); without the tuning snapshots no column here shows.
        # The primary key last: pages of equal names stay stable.
        return (
            vm_selectors.host_vm_filter(VirtualMachine.objects.all())
            .defer("tuning_live", "tuning_config")
            .order_by("host__name", "name", "pk")
        )


class VmDetailView(generics.GenericAPIView):
    """One VM (a gone one too: its last known state), by its host's name and its UUID."""

    read_permission = roles.VIEW_VM
    serializer_class = VmDetailSerializer

    def get_queryset(self) -> QuerySet[VirtualMachine]:
        return vm_selectors.vm_with_vcpus(self.kwargs["host"], self.kwargs["uuid"])

    @extend_schema(parameters=[HOST_NAME], responses={200: VmDetailSerializer})
    def get(self, request: Request, host: str, uuid: Any) -> Response:
        vm = self.get_queryset().first()
        if vm is None:
            raise Http404("No such VM on this host.")
        width, cell_of = selectors.host_cpu_map(vm.host)
        vm.vcpu_rows = vm_selectors.vcpuinfo_rows(vm, width, cell_of)
        vm.memory_bar = memory_bar(vm)
        vm.locality_now = locality_history.locality_now(vm)
        vm.locality_threshold = locality_thresholds.threshold_for(vm.host)
        return Response(self.get_serializer(vm).data)
