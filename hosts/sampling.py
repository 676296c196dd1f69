"""numastat sampling of a host's cells: store a sample with its deltas.

Two ways to sample a host, chosen by its ``worker_queue`` (what is read is
:mod:`hosts.probing`; storing it is :func:`vms.sampling.store_sample`, a layer up because a
sample also stores VM memory):

- **probe** — a worker runs ON the host (queue ``host.<name>``, ``NUMAPORTAL_ON_HOST=<name>``)
  and reads ``/sys`` and ``/proc`` there: numastat per cell, the boot time, numa_balancing and
  each running VM's numa_maps; plus free memory per cell from libvirt. It has no database and
  hands the sample back through the broker.
- **libvirt** — any central worker asks libvirt for free memory per cell
  (``getCellsFreeMemory``): all a host without its own worker can tell ("libvirt only").

Counters are stored as read; the delta to the previous sample of each cell is derived at
insert time (:func:`hosts.numastat.interval_between` handles reboots). Rollups and retention
are :mod:`hosts.rollups`; the history pages read :mod:`hosts.history`.
"""

from __future__ import annotations

import logging
from datetime import datetime

from hosts import numastat
from hosts.models import CellSample, Host

log = logging.getLogger(__name__)

DELTA_FIELDS = tuple(f"{name}_delta" for name in numastat.COUNTERS)


def record_sample(host: Host, taken_at: datetime, source: str, problems: list[str]) -> None:
    """The host's last sample: when, from where, and what went wrong (numa_balancing too)."""
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
