"""Hosts: the list's columns, and the detail's topology (cells, CPUs and their siblings,
distances, memory) as the host page shows it."""

from __future__ import annotations

from rest_framework import serializers

from hosts.models import Cell, Host, PhysicalCpu

__all__ = [
    "CellSerializer",
    "CpuSerializer",
    "HostDetailSerializer",
    "HostRegisterSerializer",
    "HostSerializer",
]


class HostSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:host-detail", lookup_field="name")
    page = serializers.CharField(source="get_absolute_url", read_only=True)
    sync_status_words = serializers.CharField(source="get_sync_status_display", read_only=True)

    class Meta:
        model = Host
        fields = [
            "url",
            "page",
            "name",
            "uri",
            "enabled",
            "worker_queue",
            "sync_status",
            "sync_status_words",
            "last_sync_at",
            "last_sync_ok_at",
            "last_error",
            "check_answer",
            "hostname",
            "hypervisor",
            "libvirt_version",
            "arch",
            "cpu_model",
            "numa_balancing",
            "last_sample_at",
        ]
        read_only_fields = fields


class CpuSerializer(serializers.ModelSerializer):
    cpu = serializers.IntegerField(source="cpu_id")
    cell = serializers.IntegerField(source="cell.cell_id")
    socket = serializers.IntegerField(source="socket_id", allow_null=True)
    die = serializers.IntegerField(source="die_id", allow_null=True)
    core = serializers.IntegerField(source="core_id", allow_null=True)

    class Meta:
        model = PhysicalCpu
        fields = ["cpu", "cell", "socket", "die", "core", "siblings"]


class CellSerializer(serializers.ModelSerializer):
    cell = serializers.IntegerField(source="cell_id")
    cpus = serializers.SerializerMethodField()
    distances = serializers.DictField(child=serializers.IntegerField())

    class Meta:
        model = Cell
        fields = ["cell", "memory_kib", "free_kib", "cpus", "distances"]

    def get_cpus(self, cell: Cell) -> list[int]:
        return sorted(cpu.cpu_id for cpu in cell.cpus.all())


class HostDetailSerializer(HostSerializer):
    cells = CellSerializer(many=True, read_only=True)
    cpus = serializers.SerializerMethodField()

    class Meta(HostSerializer.Meta):
        fields = [*HostSerializer.Meta.fields, "cpu_vendor", "cells", "cpus"]
        read_only_fields = fields

    def get_cpus(self, host: Host) -> list[dict]:
        cpus = [cpu for cell in host.cells.all() for cpu in cell.cpus.all()]
        return CpuSerializer(sorted(cpus, key=lambda c: c.cpu_id), many=True).data


class HostRegisterSerializer(serializers.Serializer):
    """The registration's fields, for the schema: the registration form
    (:class:`hosts.forms.HostRegisterForm`) validates them, with its words."""

    name = serializers.SlugField(max_length=64)
    uri = serializers.CharField(max_length=1024)
    enabled = serializers.BooleanField(default=True)
    worker_queue = serializers.CharField(max_length=100, required=False, allow_blank=True)
