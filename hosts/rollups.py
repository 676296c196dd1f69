"""numastat rollups and retention: closed 15-minute buckets summed into CellRollup, then raw
rows past the raw retention pruned — only after their bucket is rolled up, so a failed rollup
never loses samples. Rollups store sums of deltas and covered seconds (not averaged rates), so
coarser buckets stay exact.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import (
    Max,
    Min,
)
from django.utils import timezone

from hosts import numastat
from hosts.models import CellRollup, CellSample, Host
from hosts.retention import RetentionResult, roll_up_and_prune
from hosts.sampling import DELTA_FIELDS

log = logging.getLogger(__name__)


def _epoch(dt: datetime) -> float:
    return dt.timestamp()


def _from_epoch(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def rollup_host(host: Host, now: datetime | None = None, bucket_s: int | None = None) -> int:
    """Sum the host's raw samples of every closed bucket not yet rolled up; returns rows made."""
    bucket_s = bucket_s or settings.NUMAPORTAL_ROLLUP_BUCKET_S
    now = now or timezone.now()
    end = _from_epoch(numastat.bucket_start(_epoch(now), bucket_s))  # open bucket excluded
    last = CellRollup.objects.filter(host=host).aggregate(m=Max("bucket_start"))["m"]
    if last is not None:
        start = last + timedelta(seconds=bucket_s)
    else:
        first = CellSample.objects.filter(host=host).aggregate(m=Min("taken_at"))["m"]
        if first is None:
            return 0
        start = _from_epoch(numastat.bucket_start(_epoch(first), bucket_s))
    if start >= end:
        return 0
    fields = ("cell_id", "taken_at", "free_kib", "interval_s", *DELTA_FIELDS)
    raw = (
        CellSample.objects.filter(host=host, taken_at__gte=start, taken_at__lt=end)
        .order_by()
        .values_list(*fields)
        .iterator(chunk_size=5000)
    )
    buckets: dict[tuple[int, int], _RollupSum] = {}
    for cell, taken_at, free, interval_s, *deltas in raw:
        key = (cell, numastat.bucket_start(_epoch(taken_at), bucket_s))
        acc = buckets.get(key)
        if acc is None:
            acc = buckets[key] = _RollupSum()
        acc.add(free, interval_s, deltas)
    rows = [
        acc.row(host, cell, _from_epoch(start_epoch), bucket_s)
        for (cell, start_epoch), acc in sorted(buckets.items())
    ]
    CellRollup.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
    return len(rows)


class _RollupSum:
    __slots__ = ("covered_s", "deltas", "free_n", "free_sum", "samples")

    def __init__(self) -> None:
        self.samples = 0
        self.free_sum = 0
        self.free_n = 0
        self.covered_s = 0.0
        self.deltas: list[int | None] = [None] * len(DELTA_FIELDS)

    def add(self, free: int | None, interval_s: float | None, deltas: list[int | None]) -> None:
        self.samples += 1
        if free is not None:
            self.free_sum += free
            self.free_n += 1
        # Intervals without deltas (first sample, reboot) cover no time: rates stay exact.
        if interval_s is None or deltas[0] is None:
            return
        self.covered_s += interval_s
        for i, value in enumerate(deltas):
            if value is not None:
                self.deltas[i] = (self.deltas[i] or 0) + value

    def row(self, host: Host, cell: int, start: datetime, bucket_s: int) -> CellRollup:
        return CellRollup(
            host=host,
            cell_id=cell,
            bucket_start=start,
            bucket_s=bucket_s,
            samples=self.samples,
            covered_s=self.covered_s,
            free_kib_avg=round(self.free_sum / self.free_n) if self.free_n else None,
            **dict(zip(DELTA_FIELDS, self.deltas, strict=True)),
        )


def rollup_and_prune(now: datetime | None = None) -> RetentionResult:
    """The scheduled task: roll up every host, then apply the retention (:mod:`hosts.retention`)."""
    return roll_up_and_prune(CellSample, CellRollup, rollup_host, now)
