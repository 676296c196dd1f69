"""Benchmark: what VM locality history costs — a sample's write for a host of many VMs, the
rollup, the VM page's history windows and the rows' size.

    .venv/bin/python bench/locality_sample.py [--vms 300] [--samples 15] [--hours 48]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/numaportal \
        .venv/bin/python bench/locality_sample.py

Runs against a throw-away database (see bench.benchkit). Steps:

1. a host shaped like the NUMA lab (two CPU cells at distance 21, a memory-only cell at 30)
   with ``--vms`` running VMs, each with memory on two or three cells;
2. ``--samples`` on-host samples through the real ``vms.sampling.store_sample``, one minute
   apart, alternating with as many without the locality rows (``_store_locality`` replaced by
   a no-op: what a sample cost before): median / max time and queries per sample;
3. ``--hours`` of one-minute locality history for every VM (bulk-created as the sampler would
   have written it), the real ``rollup_and_prune`` over it, rows and size per VM and day;
4. ``--samples`` more samples with that history in place (the steady state);
5. one VM's page for each window (Django's test client): median / max, queries.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

# bench.benchkit sets Django up; the project modules below need it.
from bench.benchkit import count_queries, median_max_ms, throwaway_database
from hosts.history import WINDOWS
from hosts.models import Cell, Host, SampleSource
from hosts.probing import HostSample
from numaportal.virt import hostprobe
from vms import locality, locality_rollups, sampling
from vms.models import VirtualMachine, VmLocalityRollup, VmLocalitySample

LAB_DISTANCES = {0: {"0": 10, "1": 21, "2": 30}, 1: {"0": 21, "1": 10, "2": 30}}


def make_host(vms: int) -> tuple[Host, list[VirtualMachine]]:
    host = Host.objects.create(name="bench", uri="test:///default", worker_queue="host.bench")
    for cell, distances in LAB_DISTANCES.items():
        Cell.objects.create(host=host, cell_id=cell, memory_kib=1 << 30, distances=distances)
    Cell.objects.create(
        host=host, cell_id=2, memory_kib=1 << 29, distances={"0": 30, "1": 30, "2": 10}
    )
    rows = VirtualMachine.objects.bulk_create(
        VirtualMachine(
            host=host,
            uuid=uuid.uuid4(),
            name=f"vm{i:04d}",
            state="running",
            vcpu_max_config=2,
            vcpu_current_config=2,
            vcpu_max_live=2,
            vcpu_current_live=2,
            memory_kib=4 << 20,
            cells=str(i % 2),
        )
        for i in range(vms)
    )
    return host, rows


def a_sample(host: Host, vms: list[VirtualMachine], at, rng: random.Random) -> HostSample:
    memory = {}
    for vm in vms:
        home = int(vm.cells)
        cells = {
            home: hostprobe.CellMemory(heap=rng.uniform(2000, 4000), private=13.0, files=13.0),
            1 - home: hostprobe.CellMemory(heap=rng.uniform(0, 500)),
        }
        if rng.random() < 0.2:
            cells[2] = hostprobe.CellMemory(heap=rng.uniform(0, 200))
        memory[vm.name] = hostprobe.ProcessMemory(pid=1, cells=cells)
    return HostSample(
        host=host.name,
        taken_at=at,
        source=SampleSource.PROBE,
        free_kib={0: 1 << 20, 1: 1 << 20, 2: 1 << 19},
        running=tuple((vm.name, str(vm.uuid)) for vm in vms),
        probe=hostprobe.HostProbe(numastat={}, boot_time=1, numa_balancing=1, vm_memory=memory),
    )


def time_samples(host, vms, start, count: int, rng) -> tuple[float, float, int]:
    times, queries = [], 0
    for k in range(count):
        sample = a_sample(host, vms, start + timedelta(minutes=k), rng)
        started = time.perf_counter()
        queries = count_queries(lambda s=sample: sampling.store_sample(host.pk, s))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), queries


def compare(host, vms, start, count: int, rng):
    """Samples with and without the locality rows, alternating (a shared machine's noise
    falls on both): (median, max, queries) of each."""
    real = sampling._store_locality
    runs = {True: [], False: []}
    queries = {}
    for k in range(2 * count):
        with_locality = k % 2 == 0
        sampling._store_locality = real if with_locality else (lambda *a, **kw: None)
        try:
            runs[with_locality].append(
                time_samples(host, vms, start + timedelta(minutes=k), 1, rng)
            )
        finally:
            sampling._store_locality = real
        queries[with_locality] = runs[with_locality][-1][2]
    return tuple(
        (
            statistics.median(r[0] for r in runs[flag]),
            max(r[0] for r in runs[flag]),
            queries[flag],
        )
        for flag in (True, False)
    )


def fill_history(host, vms, end, hours: int, rng) -> int:
    """*hours* of one-minute locality rows for every VM, as the sampler writes them."""
    distances = locality.parse_distances(LAB_DISTANCES.items())
    batch, made = [], 0
    for m in range(hours * 60, 0, -1):
        at = end - timedelta(minutes=m)
        for vm in vms:
            home = int(vm.cells)
            own = {home: rng.uniform(2000, 4000), 1 - home: rng.uniform(0, 500)}
            batch.append(
                VmLocalitySample(
                    vm=vm,
                    host=host,
                    taken_at=at,
                    locality=locality.locality(own, {home}, distances),
                    own_mib={str(c): round(v, 1) for c, v in sorted(own.items())},
                    home_cells=vm.cells,
                    latest=False,
                )
            )
        if len(batch) >= 20000:
            VmLocalitySample.objects.bulk_create(batch, batch_size=5000)
            made += len(batch)
            batch = []
    VmLocalitySample.objects.bulk_create(batch, batch_size=5000)
    return made + len(batch)


def table_bytes(model) -> int | None:
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [model._meta.db_table])
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=300)
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(13)
    with throwaway_database("numaportal_bench_locality"):
        host, vms = make_host(args.vms)
        now = timezone.now().replace(second=0, microsecond=0)
        start = now - timedelta(hours=args.hours + 2)
        with_locality, without = compare(host, vms, start, args.samples, rng)
        print(f"{connection.vendor}, {args.vms} VMs, {args.samples} samples each")
        print(
            f"sample with locality:    median {with_locality[0]:.1f} ms, max "
            f"{with_locality[1]:.1f} ms, {with_locality[2]} queries"
        )
        print(
            f"sample without locality: median {without[0]:.1f} ms, max {without[1]:.1f} ms, "
            f"{without[2]} queries"
        )

        VmLocalitySample.objects.all().delete()
        started = time.perf_counter()
        rows = fill_history(host, vms, now, args.hours, rng)
        print(f"history: {rows} raw rows ({args.hours} h) in {time.perf_counter() - started:.1f} s")
        # the newest sample: what the pages call now
        sampling.store_sample(host.pk, a_sample(host, vms, now, rng))
        raw_size = table_bytes(VmLocalitySample)
        started = time.perf_counter()
        result = locality_rollups.rollup_and_prune(now + timedelta(minutes=1))
        print(
            f"rollup_and_prune (first run over everything): {result.as_dict()} in "
            f"{time.perf_counter() - started:.1f} s"
        )
        steady = time_samples(host, vms, now + timedelta(minutes=1), args.samples, rng)
        print(
            f"sample with {args.hours} h of history in place: median {steady[0]:.1f} ms, "
            f"max {steady[1]:.1f} ms, {steady[2]} queries"
        )
        rollups = VmLocalityRollup.objects.count()
        if raw_size is not None:
            rows_now = rows + args.vms
            print(
                f"PostgreSQL: raw {raw_size / rows_now:.0f} B/row "
                f"({raw_size / args.vms / (args.hours / 24) / 1024:.0f} KiB per VM and day); "
                f"rollups {table_bytes(VmLocalityRollup) / max(rollups, 1):.0f} B/row"
            )

        user = get_user_model().objects.create_superuser("bench", "", "bench-pass-123")
        client = Client()
        client.force_login(user)
        url = vms[0].get_absolute_url()
        for key in WINDOWS:
            target = f"{url}?window={key}"
            client.get(target)
            median, worst = median_max_ms(lambda t=target: client.get(t), args.runs)
            queries = count_queries(lambda t=target: client.get(t))
            print(f"VM page ?window={key}: {median:.0f} / {worst:.0f} ms, {queries} queries")


if __name__ == "__main__":
    main()
