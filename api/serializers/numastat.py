"""numastat history of a host (:mod:`hosts.history`), as the host's numastat page charts it:
per-cell rates (pages/s) of the charted counters and the local ratio (%), free memory (MiB),
one point per chart bucket of the window, and the latest values as ``numastat`` prints them."""

from __future__ import annotations

from rest_framework import serializers

from hosts.numastat import CHARTED

__all__ = ["NumastatHistorySerializer", "NumastatWindowSerializer"]


def _per_cell(help_text: str) -> serializers.DictField:
    """cell ("0", "1", ...) -> one value per bucket, aligned with ``times``; null is a gap."""
    return serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text=help_text,
    )


class NumastatWindowSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    seconds = serializers.IntegerField()
    bucket_s = serializers.IntegerField(help_text="chart bucket (seconds)")


class NumastatSeriesSerializer(serializers.Serializer):
    """counter -> cell -> pages/s per bucket; ``local_ratio``: percent."""

    def get_fields(self):
        fields = {name: _per_cell("pages/s per cell") for name in CHARTED}
        fields["local_ratio"] = _per_cell("local_node / (local_node + other_node), percent")
        return fields


class NumastatLatestValueSerializer(serializers.Serializer):
    since_boot = serializers.IntegerField(allow_null=True, help_text="pages since boot")
    rate = serializers.FloatField(allow_null=True, help_text="pages/s over the last interval")


class NumastatLatestRowSerializer(serializers.Serializer):
    counter = serializers.CharField()
    explanation = serializers.CharField()
    values = NumastatLatestValueSerializer(many=True, help_text="per cell, in the order of cells")

    def to_representation(self, row):
        return {
            "counter": row.counter,
            "explanation": row.explanation,
            "values": [{"since_boot": total, "rate": rate} for total, rate in row.values],
        }


class NumastatLatestSerializer(serializers.Serializer):
    """The last sample of every cell (null once raw samples are pruned)."""

    taken_at = serializers.DateTimeField()
    source = serializers.CharField(help_text='"probe" (on-host worker) or "libvirt"')
    cells = serializers.ListField(child=serializers.IntegerField())
    counters = NumastatLatestRowSerializer(source="rows", many=True)
    free_mib = serializers.ListField(child=serializers.FloatField(allow_null=True))
    local_ratio = serializers.ListField(child=serializers.FloatField(allow_null=True))


class NumastatHistorySerializer(serializers.Serializer):
    host = serializers.CharField()
    window = NumastatWindowSerializer()
    windows = NumastatWindowSerializer(many=True, help_text="every window there is")
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    cells = serializers.ListField(child=serializers.IntegerField())
    has_counters = serializers.BooleanField(
        help_text="false: free memory only (numastat counters need an on-host worker)"
    )
    ever_sampled = serializers.BooleanField()
    times = serializers.ListField(child=serializers.IntegerField(), help_text="epoch seconds")
    series = NumastatSeriesSerializer()
    free_mib = _per_cell("free memory per cell (MiB)")
    latest = NumastatLatestSerializer(allow_null=True)
