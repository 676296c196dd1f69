"""VM locality rollups and retention, as numastat's (:mod:`hosts.rollups`) with its settings:
closed buckets of ``NUMAPORTAL_ROLLUP_BUCKET_S`` summed into :class:`VmLocalityRollup` per VM,
raw samples pruned after ``NUMAPORTAL_SAMPLE_RAW_HOURS`` — only once their bucket is rolled up,
so a failed rollup never loses samples — and rollups after ``NUMAPORTAL_ROLLUP_DAYS``.

A host's newest samples (``latest``) are never pruned: they are what the pages call "now"
until the next sample replaces them, even when the host's worker has been silent for days.
Beat's ``rollup-locality`` runs :func:`rollup_and_prune` next to ``rollup-numastat``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Max, Min
from django.utils import timezone

from hosts import numastat
from hosts.models import Host
from hosts.retention import RetentionResult, roll_up_and_prune
from vms.models import VmLocalityRollup, VmLocalitySample

log = logging.getLogger(__name__)


def _from_epoch(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


@dataclass
class _LocalitySum:
    samples: int = 0
    locality_sum: float = 0.0
    locality_n: int = 0
    locality_min: float | None = None
    own_mib_sum: dict[str, float] = field(default_factory=dict)

    def add(self, value: float | None, own_mib: dict[str, float]) -> None:
        self.samples += 1
        if value is not None:
            self.locality_sum += value
            self.locality_n += 1
            self.locality_min = (
                value if self.locality_min is None else min(self.locality_min, value)
            )
        for cell, mib in (own_mib or {}).items():
            self.own_mib_sum[cell] = self.own_mib_sum.get(cell, 0.0) + float(mib)

    def row(self, vm_id: int, host: Host, start: datetime, bucket_s: int) -> VmLocalityRollup:
        return VmLocalityRollup(
            vm_id=vm_id,
            host=host,
            bucket_start=start,
            bucket_s=bucket_s,
            samples=self.samples,
            locality_sum=self.locality_sum,
            locality_n=self.locality_n,
            locality_min=self.locality_min,
            own_mib_sum={cell: round(mib, 1) for cell, mib in sorted(self.own_mib_sum.items())},
        )


def rollup_host(host: Host, now: datetime | None = None, bucket_s: int | None = None) -> int:
    """Sum the host's raw locality samples of every closed bucket not yet rolled up; returns
    the rows made (one per VM and bucket)."""
    bucket_s = bucket_s or settings.NUMAPORTAL_ROLLUP_BUCKET_S
    now = now or timezone.now()
    end = _from_epoch(numastat.bucket_start(now.timestamp(), bucket_s))  # open bucket excluded
    last = VmLocalityRollup.objects.filter(host=host).aggregate(m=Max("bucket_start"))["m"]
    if last is not None:
        start = last + timedelta(seconds=bucket_s)
    else:
        first = VmLocalitySample.objects.filter(host=host).aggregate(m=Min("taken_at"))["m"]
        if first is None:
            return 0
        start = _from_epoch(numastat.bucket_start(first.timestamp(), bucket_s))
    if start >= end:
        return 0
    raw = (
        VmLocalitySample.objects.filter(host=host, taken_at__gte=start, taken_at__lt=end)
        .order_by()
        .values_list("vm_id", "taken_at", "locality", "own_mib")
        .iterator(chunk_size=5000)
    )
    buckets: dict[tuple[int, int], _LocalitySum] = {}
    for vm_id, taken_at, value, own_mib in raw:
        key = (vm_id, numastat.bucket_start(taken_at.timestamp(), bucket_s))
        acc = buckets.get(key)
        if acc is None:
            acc = buckets[key] = _LocalitySum()
        acc.add(value, own_mib)
    rows = [
        acc.row(vm_id, host, _from_epoch(start_epoch), bucket_s)
        for (vm_id, start_epoch), acc in sorted(buckets.items())
    ]
    VmLocalityRollup.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
    return len(rows)


def rollup_and_prune(now: datetime | None = None) -> RetentionResult:
    """The scheduled task: roll up every host's locality samples, then apply the retention
    (:mod:`hosts.retention`); a VM's current row (``latest``) is never pruned."""
    return roll_up_and_prune(
        VmLocalitySample, VmLocalityRollup, rollup_host, now, keep={"latest": True}
    )


__all__ = ["RetentionResult", "rollup_and_prune", "rollup_host"]
