"""numastat sampling, rollups, retention and the history read side.

Two ways to sample a host, chosen by its ``worker_queue``:

- **probe** — a worker runs ON the host (queue ``host.<name>``, ``NUMAPORTAL_ON_HOST=<name>``)
  and reads ``/sys`` and ``/proc`` there: numastat per cell, the boot time, numa_balancing and
  each running VM's numa_maps; plus free memory per cell from libvirt.
- **libvirt** — any central worker asks libvirt for free memory per cell
  (``getCellsFreeMemory``): all a host without its own worker can tell ("libvirt only").

Counters are stored as read; the delta to the previous sample of each cell is derived at
insert time (:func:`hosts.numastat.interval_between` handles reboots). The rollup task sums
closed 15-minute buckets into :class:`~hosts.models.CellRollup` and only then prunes raw rows
older than the raw retention, so a failed rollup never loses samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import NotSupportedError, transaction
from django.db.models import (
    BigIntegerField,
    Count,
    ExpressionWrapper,
    F,
    Func,
    Max,
    Min,
    Q,
    Sum,
)
from django.utils import timezone

from hosts import numastat
from hosts.models import CellRollup, CellSample, Host, SampleSource
from numaportal.virt import connection as virt_connection
from numaportal.virt import hostfacts, hostprobe
from numaportal.virt.domains import list_domains
from numaportal.virt.errors import VirtError
from vms.models import VirtualMachine, VmCellMemory

log = logging.getLogger(__name__)

DELTA_FIELDS = tuple(f"{name}_delta" for name in numastat.COUNTERS)


class NotOnThisHost(VirtError):
    """A probe task reached a worker that does not run on the host it was meant for."""


# --- sampling -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleResult:
    host: str
    source: str
    cells: int
    vms: int
    error: str

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "source": self.source,
            "cells": self.cells,
            "vms": self.vms,
            "error": self.error,
        }


def sample_host(host_id: int, *, probe: bool) -> SampleResult:
    """Take one sample of a host and store it; a failure is recorded on the host, not raised.

    ``probe`` is true on the host's own worker (the task routed to ``host.<name>``).
    """
    host = Host.objects.get(pk=host_id)
    taken_at = timezone.now()
    source = SampleSource.PROBE if probe else SampleSource.LIBVIRT
    problems: list[str] = []
    free: dict[int, int] = {}
    running: list[tuple[str, str]] = []  # (name, uuid) of active domains
    try:
        with virt_connection.connect(host.uri, readonly=True) as conn:
            free = hostfacts.cells_free_memory_kib(conn)
            if probe:
                running = [(d.name, d.uuid) for d in list_domains(conn) if d.active]
    except VirtError as exc:
        problems.append(f"libvirt: {exc}")

    probed: hostprobe.HostProbe | None = None
    if probe:
        try:
            check_on_host(host)
            probed = hostprobe.probe_host([name for name, _ in running], _probe_root())
            problems.extend(probed.problems)
        except VirtError as exc:  # HostProbeError, NotOnThisHost
            problems.append(str(exc))

    if not free and probed is None:
        # Nothing was read: keep the last good sample as the previous one for the next delta.
        _record(host, taken_at, source, problems)
        return SampleResult(host.name, source, 0, 0, "; ".join(problems))

    with transaction.atomic():
        # One sample of a host at a time: two overlapping samples would both take the same
        # previous sample and count its interval twice in the rollup.
        Host.objects.select_for_update().filter(pk=host.pk).first()
        if CellSample.objects.filter(host=host, taken_at__gte=taken_at).exists():
            problems.append("a newer sample was stored meanwhile: this one was dropped")
            _record(host, taken_at, source, problems)
            return SampleResult(host.name, source, 0, 0, "; ".join(problems))
        rows = store_cell_samples(
            host,
            taken_at,
            # What was really read: a failed probe leaves libvirt's free memory only.
            source if probed is not None else SampleSource.LIBVIRT,
            free_kib=free,
            counters=probed.numastat if probed else {},
            boot_time=probed.boot_time if probed else None,
        )
        vms = 0
        if probed is not None:
            vms = store_vm_memory(host, taken_at, running, probed.vm_memory)
            if probed.numa_balancing is not None:
                host.numa_balancing = probed.numa_balancing
        _record(host, taken_at, source, problems)
    return SampleResult(host.name, source, len(rows), vms, "; ".join(problems))


def _probe_root() -> str:
    return settings.NUMAPORTAL_PROBE_ROOT


def check_on_host(host: Host) -> None:
    here = settings.NUMAPORTAL_ON_HOST
    if here != host.name:
        raise NotOnThisHost(
            f"this worker runs on host {here!r} (NUMAPORTAL_ON_HOST), not on {host.name!r}: "
            f"its /sys and /proc are not {host.name}'s. Start the worker for queue "
            f"{host.worker_queue!r} on {host.name} with NUMAPORTAL_ON_HOST={host.name}."
            if here
            else f"this worker is not an on-host worker (NUMAPORTAL_ON_HOST is unset), so it "
            f"cannot read {host.name}'s /sys and /proc. Start the worker for queue "
            f"{host.worker_queue!r} on {host.name} with NUMAPORTAL_ON_HOST={host.name}."
        )


def _record(host: Host, taken_at: datetime, source: str, problems: list[str]) -> None:
    host.last_sample_at = taken_at
    host.last_sample_source = source
    host.last_sample_error = "\n".join(problems)
    host.save(
        update_fields=[
            "last_sample_at",
            "last_sample_source",
            "last_sample_error",
            "numa_balancing",
        ]
    )


def store_cell_samples(
    host: Host,
    taken_at: datetime,
    source: str,
    *,
    free_kib: dict[int, int],
    counters: dict[int, dict[str, int]],
    boot_time: int | None,
) -> list[CellSample]:
    """Store one sample per cell with its deltas to the previous sample of that cell."""
    previous = {
        s.cell_id: s
        for s in CellSample.objects.filter(
            host=host,
            taken_at=CellSample.objects.filter(host=host, taken_at__lt=taken_at)
            .order_by("-taken_at")
            .values("taken_at")[:1],
        )
    }
    rows = []
    for cell in sorted(set(free_kib) | set(counters)):
        row = CellSample(
            host=host,
            cell_id=cell,
            taken_at=taken_at,
            source=source,
            free_kib=free_kib.get(cell),
            boot_time=boot_time,
        )
        values = counters.get(cell)
        if values is not None:
            for name in numastat.COUNTERS:
                setattr(row, name, values.get(name))
            prev = previous.get(cell)
            prev_values = _counters_of(prev) if prev is not None else None
            if prev is not None and prev_values is not None:
                interval = numastat.interval_between(
                    prev_values,
                    values,
                    (taken_at - prev.taken_at).total_seconds(),
                    prev_boot=prev.boot_time,
                    cur_boot=boot_time,
                )
                row.interval_s = interval.seconds
                row.reset = interval.reset
                if interval.deltas is not None:
                    for name, delta in interval.deltas.items():
                        setattr(row, f"{name}_delta", delta)
        rows.append(row)
    return CellSample.objects.bulk_create(rows)


def _counters_of(sample: CellSample) -> dict[str, int] | None:
    values = {name: getattr(sample, name) for name in numastat.COUNTERS}
    if any(v is None for v in values.values()):
        return None
    return values


def store_vm_memory(
    host: Host,
    taken_at: datetime,
    running: list[tuple[str, str]],
    memory: dict[str, hostprobe.ProcessMemory],
) -> int:
    """Replace the host's VM memory per cell by this sample's; returns how many VMs."""
    uuids = {uuid: name for name, uuid in running if name in memory}
    vms = {str(vm.uuid): vm for vm in VirtualMachine.objects.filter(host=host, uuid__in=uuids)}
    # VMs not running now have no memory on any cell: their old rows would mislead.
    VmCellMemory.objects.filter(vm__host=host).delete()
    rows = []
    for uuid, name in uuids.items():
        vm = vms.get(uuid)
        if vm is None:  # a VM the next inventory sync will bring in
            continue
        for cell, mem in memory[name].cells.items():
            rows.append(
                VmCellMemory(
                    vm=vm,
                    cell_id=cell,
                    sampled_at=taken_at,
                    huge_mib=mem.huge,
                    heap_mib=mem.heap,
                    stack_mib=mem.stack,
                    private_mib=mem.private,
                )
            )
    VmCellMemory.objects.bulk_create(rows)
    return len({row.vm_id for row in rows})


def sample_enabled_hosts() -> int:
    """Queue one sample per enabled host: on its own worker when it has one. Returns count."""
    from hosts import tasks  # tasks import this module

    expires = max(1.0, settings.NUMAPORTAL_SAMPLE_INTERVAL)
    count = 0
    for host in Host.objects.active().filter(enabled=True):
        if host.has_probe:
            tasks.probe_host.apply_async(args=[host.pk], queue=host.worker_queue, expires=expires)
        else:
            tasks.sample_host_libvirt.apply_async(args=[host.pk], expires=expires)
        count += 1
    return count


# --- rollups and retention ------------------------------------------------------------------


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


def rollup_and_prune(now: datetime | None = None) -> RetentionResult:
    """The scheduled task: roll up every host, then apply the retention."""
    now = now or timezone.now()
    made = raw_deleted = 0
    raw_cutoff = now - timedelta(hours=settings.NUMAPORTAL_SAMPLE_RAW_HOURS)
    host_ids = CellSample.objects.order_by().values_list("host_id", flat=True).distinct()
    for host in Host.objects.filter(pk__in=list(host_ids)):
        made += rollup_host(host, now)
        # Raw rows go only once their bucket is rolled up: nothing is lost if a rollup failed.
        last = CellRollup.objects.filter(host=host).aggregate(m=Max("bucket_start"))["m"]
        if last is None:
            continue
        rolled_until = last + timedelta(seconds=settings.NUMAPORTAL_ROLLUP_BUCKET_S)
        raw_deleted += CellSample.objects.filter(
            host=host, taken_at__lt=min(raw_cutoff, rolled_until)
        ).delete()[0]
    rollup_cutoff = now - timedelta(days=settings.NUMAPORTAL_ROLLUP_DAYS)
    rollups_deleted = CellRollup.objects.filter(bucket_start__lt=rollup_cutoff).delete()[0]
    return RetentionResult(made, raw_deleted, rollups_deleted)


# --- the read side: history and latest values ----------------------------------------------


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
    series = numastat.chart_series(buckets, ordered, int(_epoch(start)), int(_epoch(now)), bucket_s)
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
