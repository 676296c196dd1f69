"""The numastat history read side: per-cell rates over a window (raw samples or rollups), the
local ratio, free memory, and the latest values as ``numastat`` prints them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import NotSupportedError
from django.db.models import (
    BigIntegerField,
    Count,
    ExpressionWrapper,
    F,
    Func,
    Max,
    Q,
    Sum,
)
from django.utils import timezone

from hosts import numastat
from hosts.models import CellRollup, CellSample, Host
from hosts.sampling import DELTA_FIELDS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    seconds: int
    #: Chart bucket; windows longer than the raw retention read rollups.
    bucket_s: int


WINDOWS: dict[str, Window] = {
    w.key: w
    for w in (
        Window("1h", "1 hour", 3600, 60),
        Window("24h", "24 hours", 86400, 300),
        Window("7d", "7 days", 7 * 86400, 900),
        Window("30d", "30 days", 30 * 86400, 3600),
    )
}
DEFAULT_WINDOW = "24h"


@dataclass(frozen=True)
class History:
    window: Window
    start: datetime
    end: datetime
    cells: list[int]
    rates: numastat.ChartSeries
    #: cell -> free MiB per bucket, aligned with rates.times
    free_mib: dict[int, list[float | None]]
    has_counters: bool

    def as_json(self) -> dict[str, object]:
        data = self.rates.as_json()
        data["free_mib"] = {str(cell): vals for cell, vals in self.free_mib.items()}
        data["bucket_s"] = self.window.bucket_s
        return data


def history(host: Host, window_key: str, now: datetime | None = None) -> History:
    """Per-cell rates, local ratio and free memory of *host* over the window, bucketed.

    The database sums rows into (cell, chart bucket) groups, so a 30-day window costs a few
    thousand grouped rows in Python instead of every rollup and sample (bench/history_page.py).
    """
    window = WINDOWS.get(window_key) or WINDOWS[DEFAULT_WINDOW]
    now = now or timezone.now()
    start = now - timedelta(seconds=window.seconds)
    bucket_s = window.bucket_s
    use_rollups = window.seconds > settings.NUMAPORTAL_SAMPLE_RAW_HOURS * 3600
    raw_from = start
    sums: dict[tuple[int, int], _BucketSum] = {}
    if use_rollups:
        rollups = CellRollup.objects.filter(host=host, bucket_start__gte=start).order_by()
        last = rollups.aggregate(m=Max("bucket_start"))["m"]
        if last is not None:
            # the tail not rolled up yet comes from the raw samples
            raw_from = max(start, last + timedelta(seconds=settings.NUMAPORTAL_ROLLUP_BUCKET_S))
            # Intervals without deltas cover no time (covered_s 0, deltas null): they add nothing.
            _add_groups(
                sums,
                rollups.annotate(bucket=_EpochBucket("bucket_start", bucket_s))
                .values("cell_id", "bucket")
                .annotate(
                    seconds=Sum("covered_s"),
                    **{f"sum_{f}": Sum(f) for f in DELTA_FIELDS},
                    free_sum=Sum(
                        ExpressionWrapper(
                            F("free_kib_avg") * F("samples"), output_field=BigIntegerField()
                        )
                    ),
                    free_n=Sum("samples", filter=Q(free_kib_avg__isnull=False)),
                ),
            )
    # Only intervals with deltas count (not the first sample of a cell, not a reboot).
    with_deltas = Q(interval_s__isnull=False, numa_hit_delta__isnull=False)
    _add_groups(
        sums,
        CellSample.objects.filter(host=host, taken_at__gte=raw_from)
        .order_by()
        .annotate(bucket=_EpochBucket("taken_at", bucket_s))
        .values("cell_id", "bucket")
        .annotate(
            seconds=Sum("interval_s", filter=with_deltas),
            **{f"sum_{f}": Sum(f, filter=with_deltas) for f in DELTA_FIELDS},
            free_sum=Sum("free_kib"),
            free_n=Count("free_kib"),
        ),
    )
    ordered = sorted({cell for cell, _ in sums})
    buckets = {key: acc.span(key) for key, acc in sums.items() if acc.seconds > 0 and acc.deltas}
    series = numastat.chart_series(
        buckets, ordered, int(start.timestamp()), int(now.timestamp()), bucket_s
    )
    free_points = [
        (cell, float(t), acc.free_sum / acc.free_n, acc.free_n)
        for (cell, t), acc in sums.items()
        if acc.free_n
    ]
    free_mib = _free_series(free_points, ordered, series.times, bucket_s)
    return History(window, start, now, ordered, series, free_mib, has_counters=bool(buckets))


class _EpochBucket(Func):
    """The start, in epoch seconds, of the *bucket_s*-second bucket holding a datetime column
    (SQL's twin of :func:`hosts.numastat.bucket_start`; buckets align to the epoch)."""

    output_field = BigIntegerField()

    def __init__(self, expression: str, bucket_s: int) -> None:
        super().__init__(F(expression))
        self.bucket_s = int(bucket_s)  # an int of ours, not user input: inlined in the SQL

    def as_sql(self, compiler, connection, **extra):  # type: ignore[override]
        raise NotSupportedError(f"numastat history has no epoch bucket SQL for {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        # Django stores UTC text; strftime('%s') is whole epoch seconds (SQLite integer division)
        return (
            f"((CAST(strftime('%%s', {column}) AS INTEGER) / {self.bucket_s}) * {self.bucket_s})",
            params,
        )

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        return (
            f"(FLOOR(EXTRACT(EPOCH FROM {column}) / {self.bucket_s}) * {self.bucket_s})::bigint",
            params,
        )


class _BucketSum:
    """One (cell, chart bucket): sums of grouped rows from the rollups and the raw tail."""

    __slots__ = ("deltas", "free_n", "free_sum", "seconds")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.deltas: dict[str, int] = {}
        self.free_sum = 0
        self.free_n = 0

    def span(self, key: tuple[int, int]) -> numastat.Span:
        return numastat.Span(key[0], float(key[1]), self.seconds, self.deltas)


def _add_groups(sums: dict[tuple[int, int], _BucketSum], groups) -> None:
    # PostgreSQL's SUM(bigint) is numeric (Decimal): back to int/float for the JSON.
    for row in groups:
        key = (row["cell_id"], int(row["bucket"]))
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = _BucketSum()
        if row["seconds"]:
            acc.seconds += float(row["seconds"])
        for name in numastat.COUNTERS:
            value = row[f"sum_{name}_delta"]
            if value is not None:
                acc.deltas[name] = acc.deltas.get(name, 0) + int(value)
        if row["free_n"]:
            acc.free_sum += int(row["free_sum"])
            acc.free_n += int(row["free_n"])


def _free_series(
    points: list[tuple[int, float, float, int]],
    cells: list[int],
    times: list[int],
    bucket_s: int,
) -> dict[int, list[float | None]]:
    sums: dict[tuple[int, int], tuple[float, int]] = {}
    for cell, t, kib, weight in points:
        key = (cell, numastat.bucket_start(t, bucket_s))
        total, n = sums.get(key, (0.0, 0))
        sums[key] = (total + kib * weight, n + weight)
    out: dict[int, list[float | None]] = {}
    for cell in cells:
        vals: list[float | None] = []
        for t in times:
            total, n = sums.get((cell, t), (0.0, 0))
            vals.append(round(total / n / 1024, 1) if n else None)
        out[cell] = vals
    return out


@dataclass(frozen=True)
class LatestRow:
    counter: str
    explanation: str
    #: per cell, in the order of ``Latest.cells``: (value since boot, pages/s last interval)
    values: list[tuple[int | None, float | None]]


@dataclass(frozen=True)
class Latest:
    taken_at: datetime
    source: str
    cells: list[int]
    rows: list[LatestRow]
    free_mib: list[float | None]
    local_ratio: list[float | None]


def latest(host: Host) -> Latest | None:
    """The last sample of every cell, as ``numastat`` prints it (plus the last rates)."""
    last = (
        CellSample.objects.filter(host=host).order_by("-taken_at").values_list("taken_at").first()
    )
    if last is None:
        return None
    samples = list(CellSample.objects.filter(host=host, taken_at=last[0]).order_by("cell_id"))
    cells = [s.cell_id for s in samples]
    rows = []
    has_counters = any(s.numa_hit is not None for s in samples)
    if has_counters:
        for name in numastat.COUNTERS:
            values = []
            for s in samples:
                delta = getattr(s, f"{name}_delta")
                rate = delta / s.interval_s if delta is not None and s.interval_s else None
                values.append((getattr(s, name), rate))
            rows.append(LatestRow(name, numastat.EXPLANATIONS[name], values))
    ratios = [
        numastat.local_ratio(s.local_node_delta, s.other_node_delta)
        if s.local_node_delta is not None
        else numastat.local_ratio(s.local_node, s.other_node)
        for s in samples
    ]
    return Latest(
        taken_at=last[0],
        source=samples[0].source,
        cells=cells,
        rows=rows,
        free_mib=[None if s.free_kib is None else s.free_kib / 1024 for s in samples],
        local_ratio=ratios if has_counters else [],
    )
