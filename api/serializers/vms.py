"""VMs: the list's columns (the VM list page's), and one VM's placement as the VM page shows it:
``virsh vcpuinfo`` rows, ``virsh vcpucount``, the vCPU and emulator pins (live and config),
numatune, memory per cell and the locality now.

The detail's parts are computed by the pages' selectors (:mod:`vms.selectors`,
:mod:`vms.memory`, :mod:`vms.locality_history`); the view attaches them to the VM
(``vcpu_rows``, ``memory_bar``, ``locality_now``, ``locality_threshold``) and these serializers
only name their fields.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from vms.models import VirtualMachine

__all__ = ["VmDetailSerializer", "VmSerializer"]


class VmSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="this VM in the API")
    page = serializers.CharField(source="get_absolute_url", read_only=True)
    host = serializers.CharField(source="host.name", read_only=True)
    pinning_words = serializers.CharField(source="get_pinning_display", read_only=True)

    class Meta:
        model = VirtualMachine
        fields = [
            "url",
            "page",
            "host",
            "uuid",
            "name",
            "state",
            "persistent",
            "last_seen_at",
            "gone_at",
            "vcpu_max_config",
            "vcpu_current_config",
            "vcpu_max_live",
            "vcpu_current_live",
            "memory_kib",
            "current_memory_kib",
            "pinning",
            "pinning_words",
            "cells",
            "memory_cells",
            "cross_node",
            "drift",
            "changed_outside",
            "balancing_locked",
            "dedicated",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, vm: VirtualMachine) -> str:
        return reverse(
            "api:vm-detail", args=[vm.host.name, vm.uuid], request=self.context.get("request")
        )


class VmVcpuInfoSerializer(serializers.Serializer):
    """One row of ``virsh vcpuinfo`` (:class:`vms.selectors.VcpuRow`)."""

    vcpu = serializers.IntegerField()
    cpu = serializers.IntegerField(allow_null=True, help_text="physical CPU it last ran on")
    state = serializers.CharField()
    online = serializers.BooleanField()
    affinity = serializers.CharField(help_text="where it may run (cpuset; vcpuinfo's affinity)")
    strip = serializers.CharField(help_text="the affinity as y/- per host CPU, as virsh shows it")
    pin_live = serializers.CharField(help_text="its <vcpupin> live (blank: none)")
    pin_config = serializers.CharField(help_text="its <vcpupin> in the config (blank: none)")
    pinned = serializers.BooleanField()
    cells = serializers.CharField(help_text="cells of its affinity")


class VmLiveConfigCountSerializer(serializers.Serializer):
    config = serializers.IntegerField()
    live = serializers.IntegerField(allow_null=True, help_text="null when not running")


class VmVcpuCountSerializer(serializers.Serializer):
    """``virsh vcpucount``: maximum and current, config and live."""

    maximum = VmLiveConfigCountSerializer()
    current = VmLiveConfigCountSerializer()


class VmPinsSerializer(serializers.Serializer):
    """``virsh vcpupin``: vCPU -> cpuset, of the vCPUs that have a ``<vcpupin>``."""

    live = serializers.DictField(child=serializers.CharField())
    config = serializers.DictField(child=serializers.CharField())


class VmEmulatorPinSerializer(serializers.Serializer):
    live = serializers.CharField(help_text="cpuset (blank: none)")
    config = serializers.CharField(help_text="cpuset (blank: none)")


class VmNumatuneSerializer(serializers.Serializer):
    mode = serializers.CharField(help_text="blank: no <numatune>")
    nodeset = serializers.CharField()


class VmMemoryCellSerializer(serializers.Serializer):
    cell = serializers.IntegerField()
    mib = serializers.FloatField(help_text="the VM's own memory on the cell (MiB)")
    pct = serializers.FloatField(help_text="share of the VM's own memory (percent)")
    remote = serializers.BooleanField(help_text="on a cell none of its vCPUs may run on")
    huge_mib = serializers.FloatField(source="huge")
    heap_mib = serializers.FloatField(source="heap")
    stack_mib = serializers.FloatField(source="stack")
    private_mib = serializers.FloatField(source="private")
    files_mib = serializers.FloatField(source="files", help_text="mapped files' page cache")


class VmMemorySerializer(serializers.Serializer):
    """The VM's memory per cell as the on-host worker last read it (``numastat -p``)."""

    sampled_at = serializers.DateTimeField()
    home_cells = serializers.ListField(child=serializers.IntegerField())
    total_mib = serializers.FloatField()
    remote_mib = serializers.FloatField()
    remote_pct = serializers.FloatField()
    cells = VmMemoryCellSerializer(source="segments", many=True)

    def to_representation(self, bar):
        data = super().to_representation(bar)
        data["home_cells"] = sorted(bar.home_cells)
        return data


class VmLocalityCellSerializer(serializers.Serializer):
    cell = serializers.IntegerField()
    mib = serializers.FloatField()
    weight = serializers.FloatField(help_text="how much memory there counts, 0..1")
    home = serializers.BooleanField()
    distance = serializers.FloatField(allow_null=True, help_text="nearest home cell's distance")


class VmLocalitySerializer(serializers.Serializer):
    """The VM's locality at its host's newest on-host sample."""

    taken_at = serializers.DateTimeField()
    locality = serializers.FloatField(allow_null=True, help_text="0..1")
    home_cells = serializers.CharField()
    cells = VmLocalityCellSerializer(many=True)


class VmDetailSerializer(VmSerializer):
    vcpuinfo = VmVcpuInfoSerializer(source="vcpu_rows", many=True, read_only=True)
    vcpucount = serializers.SerializerMethodField()
    pins = serializers.SerializerMethodField()
    emulatorpin = serializers.SerializerMethodField()
    numatune = serializers.SerializerMethodField()
    memory = VmMemorySerializer(
        source="memory_bar", read_only=True, allow_null=True, help_text="null: never sampled"
    )
    locality = VmLocalitySerializer(
        source="locality_now", read_only=True, allow_null=True, help_text="null: no sample"
    )
    locality_threshold = serializers.FloatField(read_only=True)
    locality_below = serializers.SerializerMethodField()

    class Meta(VmSerializer.Meta):
        fields = [
            *VmSerializer.Meta.fields,
            "drift_detail",
            "changed_outside_detail",
            "vcpucount",
            "vcpuinfo",
            "pins",
            "emulatorpin",
            "numatune",
            "memory",
            "locality",
            "locality_threshold",
            "locality_below",
        ]
        read_only_fields = fields

    @extend_schema_field(VmVcpuCountSerializer)
    def get_vcpucount(self, vm: VirtualMachine) -> dict:
        return {
            "maximum": {"config": vm.vcpu_max_config, "live": vm.vcpu_max_live},
            "current": {"config": vm.vcpu_current_config, "live": vm.vcpu_current_live},
        }

    @extend_schema_field(VmPinsSerializer)
    def get_pins(self, vm: VirtualMachine) -> dict:
        vcpus = vm.vcpus.all()
        return {
            "live": {str(p.vcpu): p.pin_live for p in vcpus if p.pin_live},
            "config": {str(p.vcpu): p.pin_config for p in vcpus if p.pin_config},
        }

    @extend_schema_field(VmEmulatorPinSerializer)
    def get_emulatorpin(self, vm: VirtualMachine) -> dict:
        return {"live": vm.emulatorpin, "config": vm.emulatorpin_config}

    @extend_schema_field(VmNumatuneSerializer)
    def get_numatune(self, vm: VirtualMachine) -> dict:
        return {"mode": vm.numatune_mode, "nodeset": vm.numatune_nodeset}

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_locality_below(self, vm: VirtualMachine) -> bool:
        """Under its host's locality threshold now (as the VM page flags it)."""
        now = vm.locality_now
        return now is not None and now.locality is not None and now.locality < vm.locality_threshold
