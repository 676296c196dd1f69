"""Retention of a raw history and its rollups, the same for every history the portal keeps
(numastat per cell, locality per VM): roll each host's closed buckets up, then delete raw rows
older than ``NUMAPORTAL_SAMPLE_RAW_HOURS`` — only once their bucket is rolled up, so nothing is
lost when a rollup failed — and rollups older than ``NUMAPORTAL_ROLLUP_DAYS``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Max, Model
from django.utils import timezone

from hosts.models import Host

__all__ = ["RetentionResult", "roll_up_and_prune"]


@dataclass(frozen=True)
class RetentionResult:
    rollups_made: int
    raw_deleted: int
    rollups_deleted: int

    def as_dict(self) -> dict[str, int]:
        return {
            "rollups_made": self.rollups_made,
            "raw_deleted": self.raw_deleted,
            "rollups_deleted": self.rollups_deleted,
        }


def roll_up_and_prune(
    raw: type[Model],
    rollups: type[Model],
    rollup_host: Callable[[Host, datetime], int],
    now: datetime | None = None,
    *,
    keep: Mapping[str, Any] | None = None,
) -> RetentionResult:
    """Roll up every host that has *raw* rows (``rollup_host(host, now)``), then prune.

    *raw* and *rollups* are the models (each with ``host``, and ``taken_at`` / ``bucket_start``);
    *keep*: raw rows matching it are never pruned (a VM's current locality row)."""
    now = now or timezone.now()
    made = raw_deleted = 0
    raw_cutoff = now - timedelta(hours=settings.NUMAPORTAL_SAMPLE_RAW_HOURS)
    host_ids = raw.objects.order_by().values_list("host_id", flat=True).distinct()
    for host in Host.objects.filter(pk__in=list(host_ids)):
        made += rollup_host(host, now)
        last = rollups.objects.filter(host=host).aggregate(m=Max("bucket_start"))["m"]
        if last is None:
            continue
        rolled_until = last + timedelta(seconds=settings.NUMAPORTAL_ROLLUP_BUCKET_S)
        old = raw.objects.filter(host=host, taken_at__lt=min(raw_cutoff, rolled_until))
        if keep:
            old = old.exclude(**keep)
        raw_deleted += old.delete()[0]
    rollup_cutoff = now - timedelta(days=settings.NUMAPORTAL_ROLLUP_DAYS)
    rollups_deleted = rollups.objects.filter(bucket_start__lt=rollup_cutoff).delete()[0]
    return RetentionResult(made, raw_deleted, rollups_deleted)
