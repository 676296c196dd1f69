"""Balancing: a plan as its page shows it (before / after, scores, policy, approval, its change
records), the bodies that request and approve one, a host's policy, and the numa_balancing
switch."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from balancing import policies as plan_policies
from balancing.models import BalancingPlan, BalancingPolicy
from balancing.selectors import plan_changes
from changes.kinds.numa_balancing import ALLOWED_VALUES

__all__ = [
    "ApproveSerializer",
    "NumaBalancingSerializer",
    "PlanDetailSerializer",
    "PlanRequestSerializer",
    "PlanSerializer",
    "PolicySerializer",
    "PolicyWriteSerializer",
]


class PlanSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:plan-detail")
    page = serializers.CharField(source="get_absolute_url", read_only=True)
    host = serializers.CharField(source="host.name", read_only=True)
    status_words = serializers.CharField(source="get_status_display", read_only=True)

    class Meta:
        model = BalancingPlan
        fields = [
            "id",
            "url",
            "page",
            "host",
            "status",
            "status_words",
            "trigger",
            "requested_by_name",
            "created_at",
            "computed_at",
            "improvement_pct",
            "moves",
            "error",
            "approved_by_name",
            "approved_at",
            "reason",
            "finished_at",
            "outcome",
        ]
        read_only_fields = fields


class PlanDetailSerializer(PlanSerializer):
    """The plan with what it was computed from and what it proposes; once approved, its
    change records (``group_id`` = the plan's id), in the order they are applied."""

    policy = serializers.JSONField(read_only=True)
    demands = serializers.JSONField(read_only=True)
    before = serializers.JSONField(read_only=True)
    after = serializers.JSONField(read_only=True)
    score_before = serializers.JSONField(read_only=True, allow_null=True)
    score_after = serializers.JSONField(read_only=True, allow_null=True)
    notes = serializers.JSONField(read_only=True)
    apply_order = serializers.JSONField(read_only=True)
    changes = serializers.SerializerMethodField()

    class Meta(PlanSerializer.Meta):
        fields = [
            *PlanSerializer.Meta.fields,
            "based_on_sync_at",
            "policy",
            "demands",
            "before",
            "after",
            "score_before",
            "score_after",
            "notes",
            "locality_below",
            "apply_order",
            "changes",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.URLField()))
    def get_changes(self, plan: BalancingPlan) -> list[str]:
        if not plan.approved_at:
            return []
        request = self.context.get("request")
        field = serializers.HyperlinkedIdentityField(view_name="api:change-detail")
        return [field.get_url(c, "api:change-detail", request, None) for c in plan_changes(plan)]


class PlanRequestSerializer(serializers.Serializer):
    host = serializers.CharField(max_length=255, help_text="the host's name in the portal")


class ApproveSerializer(serializers.Serializer):
    reason = serializers.CharField(
        allow_blank=True, help_text="why apply it now: kept in every change record"
    )


class PolicySerializer(serializers.ModelSerializer):
    """A host's balancing policy (a host without one: the defaults)."""

    host = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = BalancingPolicy
        fields = ["host", *plan_policies.POLICY_FIELDS, "updated_at"]
        read_only_fields = fields


class PolicyWriteSerializer(serializers.ModelSerializer):
    """The policy form's fields and its reason (the policy form checks them, with its words;
    ``PATCH`` takes only those that change)."""

    reason = serializers.CharField(help_text="why: kept in the balancing_policy change record")

    class Meta:
        model = BalancingPolicy
        fields = [*plan_policies.POLICY_FIELDS, "reason"]


class NumaBalancingSerializer(serializers.Serializer):
    value = serializers.ChoiceField(choices=list(ALLOWED_VALUES))
    reason = serializers.CharField(help_text="why: kept in the change record")
