"""Benchmark: the numastat history page over 30 days of one-minute samples of an 8-cell host.

    .venv/bin/python bench/history_page.py [--days 30] [--cells 8] [--runs 7]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/numaportal \
        .venv/bin/python bench/history_page.py

Runs against a throw-away database: on DATABASE_URL's PostgreSQL server a test database of
its own (created and dropped here), else a temporary SQLite file (a file, not memory, so that
reads cost what they cost on disk). Steps:

1. bulk-create days x 1440 samples per cell, counters growing at realistic, varying rates,
   the host rebooting half-way (counters start again from zero, boot time changes), deltas
   derived as ``store_cell_samples`` derives them;
2. run the real ``rollup_and_prune(now)`` once, as the scheduled task would after the rollup
   task had been down for the whole period (the worst case), and report rows and time;
3. request ``/hosts/<name>/numastat/?window=...`` for every window with Django's test client
   and report the median and maximum response time, the number of queries and the size.
"""

from __future__ import annotations

import argparse
import gzip
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

# bench.benchkit sets Django up; the project modules below need it.
from bench.benchkit import count_queries, throwaway_database, timed_ms
from hosts import history
from hosts import rollups as numastat_rollups
from hosts.models import CellRollup, CellSample, Host, SampleSource
from hosts.numastat import COUNTERS

STEP_S = 60


def make_samples(host: Host, cells: int, days: float, now: datetime) -> int:
    """One sample per cell per minute up to *now*, bulk-inserted; returns the row count."""
    rng = random.Random(42)
    count = int(days * 86400 // STEP_S)
    first = now - timedelta(seconds=STEP_S * count)
    reboot_at = count // 2
    boot = [int(first.timestamp()) - 3600, int((first + timedelta(days=days / 2)).timestamp())]
    # pages per minute, per cell: a daily rhythm around a per-cell base
    base = [rng.uniform(0.6e6, 2.4e6) for _ in range(cells)]
    remote = [rng.uniform(0.01, 0.15) for _ in range(cells)]
    totals = [dict.fromkeys(COUNTERS, 0) for _ in range(cells)]
    previous: list[dict[str, int] | None] = [None] * cells
    batch: list[CellSample] = []
    rows = 0
    for k in range(count):
        taken_at = first + timedelta(seconds=STEP_S * (k + 1))
        rebooted = k == reboot_at
        if rebooted:
            totals = [dict.fromkeys(COUNTERS, 0) for _ in range(cells)]
        day_phase = (taken_at.timestamp() % 86400) / 86400
        for cell in range(cells):
            hits = int(base[cell] * (1.2 + 0.8 * rng.random()) * (0.6 + 0.4 * day_phase))
            other = int(hits * remote[cell] * rng.uniform(0.5, 1.5))
            inc = {
                "numa_hit": hits,
                "numa_miss": other // 3,
                "numa_foreign": int(other * rng.uniform(0.1, 0.5)),
                "interleave_hit": rng.randrange(0, 40),
                "local_node": hits - other,
                "other_node": other,
            }
            t = totals[cell]
            for name, value in inc.items():
                t[name] += value
            row = CellSample(
                host=host,
                cell_id=cell,
                taken_at=taken_at,
                source=SampleSource.PROBE,
                free_kib=int((64 << 20) * (0.2 + 0.3 * rng.random())),
                boot_time=boot[1] if k >= reboot_at else boot[0],
                **t,
            )
            prev = previous[cell]
            if prev is not None:
                row.interval_s = float(STEP_S)
                row.reset = rebooted
                if not rebooted:
                    for name in COUNTERS:
                        setattr(row, f"{name}_delta", t[name] - prev[name])
            previous[cell] = dict(t)
            batch.append(row)
        if len(batch) >= 8000:
            CellSample.objects.bulk_create(batch)
            rows += len(batch)
            batch = []
    CellSample.objects.bulk_create(batch)
    return rows + len(batch)


def table_bytes() -> dict[str, int] | None:
    """Bytes on disk per table (with its indexes), or None when the database cannot tell."""
    tables = ("hosts_cellsample", "hosts_cellrollup")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            return {
                t: cursor.execute("SELECT pg_total_relation_size(%s)", [t]).fetchone()[0]
                for t in tables
            }
        if connection.vendor == "sqlite":
            try:
                cursor.execute(
                    "SELECT tbl_name, name FROM sqlite_master WHERE tbl_name IN (%s, %s)", tables
                )
                owner = {name: tbl for tbl, name in cursor.fetchall()}
                cursor.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
                sizes = dict.fromkeys(tables, 0)
                for name, size in cursor.fetchall():
                    if name in owner:
                        sizes[owner[name]] += size
                return sizes
            except Exception:  # dbstat is a compile-time option of SQLite
                return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with throwaway_database("bench_numaportal_history"):
        print(f"database: {connection.vendor} ({connection.settings_dict['NAME']})")
        now = timezone.now()
        host = Host.objects.create(
            name="bench8", uri="qemu+ssh://root@bench8.example.net/system", worker_queue="q"
        )
        start = time.perf_counter()
        rows = make_samples(host, args.cells, args.days, now)
        print(
            f"inserted {rows:,} CellSample rows ({args.cells} cells x {rows // args.cells:,} "
            f"one-minute samples, {args.days:g} days, reboot half-way) "
            f"in {time.perf_counter() - start:.1f} s"
        )
        sizes = table_bytes()
        if sizes:
            raw_bytes = sizes["hosts_cellsample"] / rows
            per_day = 86400 // STEP_S * args.cells
            print(
                f"raw samples on disk: {sizes['hosts_cellsample'] / 2**20:.1f} MiB with indexes"
                f" = {raw_bytes:.0f} bytes/row; {per_day:,} rows/day for this host ="
                f" {raw_bytes * per_day / 2**20:.2f} MiB/day"
            )

        start = time.perf_counter()
        result = numastat_rollups.rollup_and_prune(now)
        elapsed = time.perf_counter() - start
        raw_left = CellSample.objects.count()
        rollups = CellRollup.objects.count()
        print(
            f"rollup_and_prune(now): {elapsed:.1f} s; {result.as_dict()}; "
            f"left: {raw_left:,} raw rows (last {settings.NUMAPORTAL_SAMPLE_RAW_HOURS:g} h), "
            f"{rollups:,} rollups"
        )
        again = timed_ms(lambda: numastat_rollups.rollup_and_prune(now + timedelta(minutes=15)))
        print(f"the next run, 15 minutes later: {again:.0f} ms")
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE hosts_cellsample")
                cursor.execute("VACUUM ANALYZE hosts_cellrollup")
        sizes = table_bytes()
        if sizes and rollups:
            per_row = sizes["hosts_cellrollup"] / rollups
            per_day = 86400 // settings.NUMAPORTAL_ROLLUP_BUCKET_S * args.cells
            print(
                f"rollups on disk: {sizes['hosts_cellrollup'] / 2**20:.1f} MiB with indexes"
                f" = {per_row:.0f} bytes/row; {per_day:,} rows/day for this host ="
                f" {per_row * per_day / 2**10:.0f} KiB/day"
            )

        user = get_user_model().objects.create_superuser("bench", "", "bench-password-123")
        client = Client()
        client.force_login(user)
        url = reverse("hosts:numastat", args=[host.name])
        print(f"GET {url}?window=... ({args.runs} runs each, after one warm-up)")
        for key in history.WINDOWS:
            response = client.get(url, {"window": key})  # warm-up (and the query count)
            assert response.status_code == 200, response.status_code
            queries = count_queries(lambda key=key: client.get(url, {"window": key}))
            times = [
                timed_ms(lambda key=key: client.get(url, {"window": key})) for _ in range(args.runs)
            ]
            history_ms = statistics.median(
                timed_ms(lambda key=key: history.history(host, key)) for _ in range(3)
            )
            data = response.context["chart_data"]
            print(
                f"  {key:>3}: median {statistics.median(times):6.1f} ms, max {max(times):6.1f} ms"
                f" (history() {history_ms:5.1f} ms), {queries} queries,"
                f" {len(response.content) / 1024:6.1f} KiB"
                f" ({len(gzip.compress(response.content)) / 1024:5.1f} KiB gzipped),"
                f" {len(data['times'])} points"
                f" x {len(data['cells'])} cells"
            )


if __name__ == "__main__":
    main()
