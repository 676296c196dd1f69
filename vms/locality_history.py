"""One VM's locality read side: its locality now (the host's newest on-host sample) and its
history over a window — locality and own memory per cell, bucketed like the numastat history
(the same windows, raw samples for 1 h and 24 h, rollups plus the raw tail beyond the raw
retention).

A VM's rows are few (a day of one-minute samples is 1,440 rows, 30 days of rollups 2,880), so
they are summed into chart buckets here rather than in SQL: the memory per cell is JSON. Two
queries at most, whatever the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from hosts import numastat
from hosts.history import DEFAULT_WINDOW, WINDOWS, Window
from hosts.models import Cell
from hosts.selectors import safe_nodeset
from vms import locality
from vms.models import VirtualMachine, VmLocalityRollup, VmLocalitySample

__all__ = ["LocalityHistory", "LocalityNow", "history", "locality_now"]


@dataclass(frozen=True)
class CellShare:
    cell: int
    mib: float
    #: How much memory there counts (1 home; elsewhere (2 x local - distance) / local, 0 from
    #: twice the local distance on; vms.locality).
    weight: float
    home: bool
    #: The nearest home cell's distance to it (None: home, or not known).
    distance: float | None = None


@dataclass(frozen=True)
class LocalityNow:
    taken_at: datetime
    locality: float | None
    home_cells: str
    cells: list[CellShare]


def locality_now(vm: VirtualMachine) -> LocalityNow | None:
    """The VM's row of its host's newest sample, with each cell's weight; None when it has
    none (not running at the last sample, or no on-host worker). Two queries."""
    row = VmLocalitySample.objects.filter(vm=vm, latest=True).first()
    if row is None:
        return None
    distances = locality.parse_distances(
        Cell.objects.filter(host_id=vm.host_id).order_by().values_list("cell_id", "distances")
    )
    home = safe_nodeset(row.home_cells)
    cells = []
    for key, mib in sorted(_cells(row.own_mib).items()):
        at_home = key in home
        cells.append(
            CellShare(
                key,
                mib,
                locality.cell_weight(key, home, distances) if home else 0,
                at_home,
                None if at_home else locality.nearest_distance(key, home, distances),
            )
        )
    return LocalityNow(row.taken_at, row.locality, row.home_cells, cells)


def _cells(own_mib: object) -> dict[int, float]:
    """A stored {"<cell>": MiB} as ints and floats (rows are ours, but JSON is JSON)."""
    out: dict[int, float] = {}
    if not isinstance(own_mib, dict):
        return out
    for key, mib in own_mib.items():
        try:
            out[int(key)] = float(mib)
        except (TypeError, ValueError):
            continue
    return out


@dataclass
class _Bucket:
    samples: int = 0
    locality_sum: float = 0.0
    locality_n: int = 0
    locality_min: float | None = None
    mib_sum: dict[int, float] = field(default_factory=dict)

    def add(
        self,
        samples: int,
        value_sum: float,
        value_n: int,
        value_min: float | None,
        mib: dict[int, float],
    ) -> None:
        self.samples += samples
        self.locality_sum += value_sum
        self.locality_n += value_n
        if value_min is not None:
            self.locality_min = (
                value_min if self.locality_min is None else min(self.locality_min, value_min)
            )
        for cell, value in mib.items():
            self.mib_sum[cell] = self.mib_sum.get(cell, 0.0) + value


@dataclass(frozen=True)
class LocalityHistory:
    window: Window
    start: datetime
    end: datetime
    times: list[int]
    cells: list[int]
    #: Mean locality per bucket (None: no sample with a locality), aligned with ``times``.
    locality: list[float | None]
    #: Lowest locality of a sample in the bucket.
    locality_min: list[float | None]
    #: cell -> mean own MiB per bucket (None: no sample in the bucket).
    own_mib: dict[int, list[float | None]]

    @property
    def has_samples(self) -> bool:
        return bool(self.cells) or any(v is not None for v in self.locality)

    def as_json(self) -> dict[str, object]:
        return {
            "times": self.times,
            "cells": self.cells,
            "locality": self.locality,
            "locality_min": self.locality_min,
            "own_mib": {str(cell): values for cell, values in self.own_mib.items()},
            "bucket_s": self.window.bucket_s,
        }


def history(vm: VirtualMachine, window_key: str, now: datetime | None = None) -> LocalityHistory:
    """The VM's locality and own memory per cell over the window, one point per chart bucket."""
    window = WINDOWS.get(window_key) or WINDOWS[DEFAULT_WINDOW]
    now = now or timezone.now()
    start = now - timedelta(seconds=window.seconds)
    bucket_s = window.bucket_s
    buckets: dict[int, _Bucket] = {}

    def bucket(at: datetime) -> _Bucket:
        key = numastat.bucket_start(at.timestamp(), bucket_s)
        found = buckets.get(key)
        if found is None:
            found = buckets[key] = _Bucket()
        return found

    raw_from = start
    if window.seconds > settings.NUMAPORTAL_SAMPLE_RAW_HOURS * 3600:
        rollups = list(
            VmLocalityRollup.objects.filter(vm=vm, bucket_start__gte=start)
            .order_by("bucket_start")
            .values_list(
                "bucket_start",
                "samples",
                "locality_sum",
                "locality_n",
                "locality_min",
                "own_mib_sum",
            )
        )
        if rollups:
            # the tail not rolled up yet comes from the raw samples
            last = rollups[-1][0]
            raw_from = max(start, last + timedelta(seconds=settings.NUMAPORTAL_ROLLUP_BUCKET_S))
        for at, samples, value_sum, value_n, value_min, mib in rollups:
            bucket(at).add(samples, value_sum, value_n, value_min, _cells(mib))
    for at, value, mib in (
        VmLocalitySample.objects.filter(vm=vm, taken_at__gte=raw_from, taken_at__lte=now)
        .order_by("taken_at")
        .values_list("taken_at", "locality", "own_mib")
    ):
        bucket(at).add(1, value or 0.0, int(value is not None), value, _cells(mib))

    times = list(
        range(numastat.bucket_start(start.timestamp(), bucket_s), int(now.timestamp()), bucket_s)
    )
    cells = sorted({cell for acc in buckets.values() for cell in acc.mib_sum})
    values: list[float | None] = []
    lows: list[float | None] = []
    own: dict[int, list[float | None]] = {cell: [] for cell in cells}
    for t in times:
        acc = buckets.get(t)
        mean = acc.locality_sum / acc.locality_n if acc and acc.locality_n else None
        values.append(None if mean is None else round(mean, 4))
        low = acc.locality_min if acc else None
        lows.append(None if low is None else round(low, 4))
        for cell in cells:
            # a sample without memory on a cell had 0 MiB there: the mean is over all samples
            own[cell].append(
                round(acc.mib_sum.get(cell, 0.0) / acc.samples, 1) if acc and acc.samples else None
            )
    return LocalityHistory(window, start, now, times, cells, values, lows, own)
