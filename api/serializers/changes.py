"""Changes: the record as the change page shows it, and the body of a request
(``POST /api/v1/changes/``: host, VM, kind, params, scope, reason)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from changes.kinds import registry
from changes.kinds.validation import SCOPES
from changes.models import Change
from numaportal.virt.scope import Scope

__all__ = ["ChangeRequestSerializer", "ChangeSerializer", "ChangeVmSerializer"]


class ChangeVmSerializer(serializers.Serializer):
    uuid = serializers.UUIDField()
    name = serializers.CharField()


class ChangeSerializer(serializers.ModelSerializer):
    """One change record: what was asked (kind, params, scope, reason, by whom), its status
    (poll it: queued -> running -> succeeded or failed) and, once it ran, the state before and
    after, the diff, libvirt's error and what really happened (outcome)."""

    url = serializers.HyperlinkedIdentityField(view_name="api:change-detail")
    page = serializers.CharField(source="get_absolute_url", read_only=True)
    host = serializers.CharField(source="host.name", read_only=True)
    vm = serializers.SerializerMethodField()
    params = serializers.JSONField(read_only=True)
    before = serializers.JSONField(read_only=True, allow_null=True)
    after = serializers.JSONField(read_only=True, allow_null=True)
    progress = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = Change
        fields = [
            "id",
            "url",
            "page",
            "kind",
            "scope",
            "params",
            "reason",
            "status",
            "actor_name",
            "host",
            "vm",
            "target_name",
            "group_id",
            "created_at",
            "started_at",
            "finished_at",
            "error",
            "outcome",
            "before",
            "after",
            "diff",
            "progress",
        ]
        read_only_fields = fields

    @extend_schema_field(ChangeVmSerializer(allow_null=True))
    def get_vm(self, change: Change) -> dict[str, Any] | None:
        if change.vm_id is None:
            return None
        return {"uuid": str(change.vm.uuid), "name": change.vm.name}


class ChangeRequestSerializer(serializers.Serializer):
    """A change to request. Only the shape is checked here: the values are checked by the change
    forms' fields and the kind's own validation (:func:`changes.requests.request_change`), so a
    refusal is in the forms' words, under the field it is about."""

    host = serializers.CharField(max_length=255, help_text="the host's name in the portal")
    vm = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=64,
        help_text="the VM's UUID; omit it (or null) for a host setting (numa_balancing)",
    )
    kind = serializers.CharField(
        max_length=32,
        help_text="one of "
        + ", ".join([*(k.name for k in registry.requestable()), Change.Kind.NUMA_BALANCING]),
    )
    params = serializers.DictField(
        help_text='the kind\'s parameters, e.g. {"vcpu": 0, "cpuset": "1"} for vcpupin, '
        '{"cpuset": "0-3"} for emulatorpin, {"value": 0} for numa_balancing'
    )
    scope = serializers.CharField(
        required=False,
        default=Scope.BOTH.value,
        max_length=16,
        help_text="one of "
        + ", ".join(SCOPES)
        + f" (default {Scope.BOTH.value}, as the change forms)",
    )
    reason = serializers.CharField(
        allow_blank=True, trim_whitespace=False, help_text="why: kept in the change record"
    )
