"""``/api/v1/hosts/``: list and detail (with the topology) for viewers; register, sync and
remove with the pages' permissions, through the pages' services and form."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import validation_error
from api.serializers.hosts import HostDetailSerializer, HostRegisterSerializer, HostSerializer
from hosts import services
from hosts.forms import HostRegisterForm
from hosts.models import Cell, Host
from numaportal import roles
from vms import requests

__all__ = ["HostViewSet"]


class HostViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Hosts in the portal (removed ones are not listed), by name."""

    lookup_field = "name"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    read_permission = roles.VIEW_HOST
    write_permission = {
        "create": roles.ADD_HOST,
        "sync": roles.CHANGE_HOST,
        "destroy": roles.DELETE_HOST,
    }

    def get_queryset(self) -> QuerySet[Host]:
        hosts = Host.objects.active().order_by("name")
        if self.action == "list":
            return hosts
        return hosts.prefetch_related(
            Prefetch("cells", queryset=Cell.objects.order_by("cell_id").prefetch_related("cpus"))
        )

    def get_serializer_class(self) -> type:
        return HostSerializer if self.action == "list" else HostDetailSerializer

    @extend_schema(request=HostRegisterSerializer, responses={201: HostDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Register a host: saved "checking the connection", then a worker tests the
        connection and syncs it (follow ``sync_status``); nothing here contacts the host."""
        form = HostRegisterForm(request.data)
        if not form.is_valid():
            raise validation_error(ValidationError(form.errors.as_data()))
        # ValidationError: 400 with the fields; PermissionDenied: 403.
        host = requests.register_from_form(form.cleaned_data, actor=request.user)
        host = self.get_queryset().get(pk=host.pk)
        return Response(
            HostDetailSerializer(host, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=None, responses={202: HostSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, name: str) -> Response:
        """Sync now (a host that never passed its connection test is tested again); follow
        ``sync_status``. A host whose sync is already queued or running gets no second one:
        the answer shows the pending one."""
        host = self.get_object()
        requests.request_sync(host, actor=request.user)
        host.refresh_from_db()
        return Response(
            HostSerializer(host, context=self.get_serializer_context()).data,
            status=status.HTTP_202_ACCEPTED,
        )

    def perform_destroy(self, instance: Host) -> None:
        # Removed from the portal, its VMs and history kept (forgotten if it never connected).
        services.remove_host(instance, actor=self.request.user)
