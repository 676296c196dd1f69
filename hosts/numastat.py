"""numastat arithmetic: per-interval deltas with reset handling, buckets, rates, local ratio.

Pure functions (no Django, no I/O) shared by the sampler, the rollup task, the history page
and the benchmark. The kernel's node*/numastat counters only grow while the host is up; a
reboot starts them again from zero. An interval across a reboot (boot time changed, or any
counter went down) therefore has no meaningful delta and yields no rate: the chart shows a
gap there instead of a huge negative spike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from numaportal.virt.hostprobe import NUMASTAT_COUNTERS

#: As the kernel writes them, in the order ``numastat`` prints them (the probe's list).
COUNTERS: tuple[str, ...] = NUMASTAT_COUNTERS

#: One line per counter, shown where the counter is (Documentation/admin-guide/numastat.rst).
#: Each is counted on the cell named in the column; "a process" is the allocating task.
EXPLANATIONS: dict[str, str] = {
    "numa_hit": "a process wanted memory from this cell and got it there.",
    "numa_miss": "a process wanted memory from another cell but got it from this cell "
    "(that cell was full).",
    "numa_foreign": "a process wanted memory from this cell but got it from another cell "
    "(this cell was full).",
    "interleave_hit": "interleaved allocation wanted this cell and got it.",
    "local_node": "a process running on this cell's CPUs got memory from this cell.",
    "other_node": "a process running on another cell's CPUs got memory from this cell "
    "(remote for that process).",
    "local_ratio": "local_node / (local_node + other_node): the share of this cell's "
    "allocations made by processes running on the cell itself. 100% is ideal.",
}

#: What the history page charts (local_ratio is derived from local_node and other_node).
CHARTED: tuple[str, ...] = ("numa_hit", "numa_miss", "numa_foreign", "other_node")


@dataclass(frozen=True, slots=True)
class Interval:
    """What happened on one cell between two samples."""

    seconds: float
    #: counter -> increase (pages); None when the interval spans a counter reset.
    deltas: dict[str, int] | None

    @property
    def reset(self) -> bool:
        return self.deltas is None


def interval_between(
    prev: Mapping[str, int],
    cur: Mapping[str, int],
    seconds: float,
    *,
    prev_boot: int | None = None,
    cur_boot: int | None = None,
) -> Interval:
    """The deltas from sample *prev* to sample *cur* of one cell, ``seconds`` apart.

    A reset (the host rebooted) is recognised by a changed boot time when both are known,
    and in any case by a counter that went down: then there are no deltas for this interval.
    """
    if seconds <= 0:
        raise ValueError(f"samples must be in time order (interval {seconds} s)")
    if prev_boot is not None and cur_boot is not None and prev_boot != cur_boot:
        return Interval(seconds, None)
    deltas: dict[str, int] = {}
    for name in COUNTERS:
        before, after = prev.get(name), cur.get(name)
        if before is None or after is None:
            continue
        if after < before:
            return Interval(seconds, None)
        deltas[name] = after - before
    return Interval(seconds, deltas)


def local_ratio(local_node: float | None, other_node: float | None) -> float | None:
    """local_node / (local_node + other_node) as a percentage; None when nothing was counted."""
    if local_node is None or other_node is None:
        return None
    total = local_node + other_node
    if total <= 0:
        return None
    return 100.0 * local_node / total


@dataclass(frozen=True, slots=True)
class Span:
    """Deltas summed over some time on one cell: a raw interval, a rollup, or a chart bucket.

    ``seconds`` counts only the time covered by intervals with deltas (resets excluded), so a
    rate is always increase / covered time, and spans can be added without losing exactness.
    """

    cell: int
    start: float  # epoch seconds (the bucket or interval start)
    seconds: float
    deltas: Mapping[str, int]

    def rate(self, counter: str) -> float | None:
        """Pages per second; None when nothing of this span had a delta for *counter*."""
        if self.seconds <= 0 or counter not in self.deltas:
            return None
        return self.deltas[counter] / self.seconds

    def local_ratio(self) -> float | None:
        return local_ratio(self.deltas.get("local_node"), self.deltas.get("other_node"))


def bucket_start(epoch: float, bucket_s: int) -> int:
    """The start of the *bucket_s*-second bucket holding *epoch* (buckets align to the epoch)."""
    return int(epoch // bucket_s) * bucket_s


def bucketize(spans: Iterable[Span], bucket_s: int) -> dict[tuple[int, int], Span]:
    """Sum spans into (cell, bucket start) buckets of *bucket_s* seconds.

    A span goes to the bucket of its own start time. Spans with no deltas (resets) add
    nothing, so a bucket that only saw a reboot does not exist: a gap.
    """
    sums: dict[tuple[int, int], tuple[float, dict[str, int]]] = {}
    for span in spans:
        if not span.deltas or span.seconds <= 0:
            continue
        key = (span.cell, bucket_start(span.start, bucket_s))
        seconds, deltas = sums.get(key, (0.0, {}))
        for name, value in span.deltas.items():
            deltas[name] = deltas.get(name, 0) + value
        sums[key] = (seconds + span.seconds, deltas)
    return {
        (cell, start): Span(cell, float(start), seconds, deltas)
        for (cell, start), (seconds, deltas) in sums.items()
    }


@dataclass(frozen=True)
class ChartSeries:
    """Aligned series for a chart: one time axis, one list of values per cell (None = gap)."""

    times: list[int]
    cells: list[int]
    #: counter (or "local_ratio") -> cell -> values aligned with ``times``
    values: dict[str, dict[int, list[float | None]]]

    def as_json(self) -> dict[str, object]:
        return {
            "times": self.times,
            "cells": self.cells,
            "series": {
                name: {str(cell): vals for cell, vals in per_cell.items()}
                for name, per_cell in self.values.items()
            },
        }


def chart_series(
    buckets: Mapping[tuple[int, int], Span],
    cells: Sequence[int],
    start: int,
    end: int,
    bucket_s: int,
    counters: Sequence[str] = CHARTED,
) -> ChartSeries:
    """Rates (pages/s) per counter and the local ratio (%) per cell, one point per bucket
    from *start* to *end*; a bucket without data is None so the chart draws a gap."""
    first = bucket_start(start, bucket_s)
    times = list(range(first, end, bucket_s))
    values: dict[str, dict[int, list[float | None]]] = {
        name: {cell: [] for cell in cells} for name in (*counters, "local_ratio")
    }
    for t in times:
        for cell in cells:
            span = buckets.get((cell, t))
            for name in counters:
                values[name][cell].append(None if span is None else _round(span.rate(name)))
            values["local_ratio"][cell].append(None if span is None else _round(span.local_ratio()))
    return ChartSeries(times, list(cells), values)


def _round(value: float | None) -> float | None:
    # Three decimals keep the page small for 30 days x 8 cells without visible loss.
    return None if value is None else round(value, 3)
