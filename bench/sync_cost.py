"""Benchmark: what one inventory sync costs, and how the topology diagram scales.

    .venv/bin/python bench/sync_cost.py [--uri qemu:///system] [--runs 7]

Runs against a throw-away test database (created and dropped here, on DATABASE_URL's server)
and the real libvirt daemon of the lab. Prints medians; the README quotes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "numaportal.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from bench.dense_host import big_topology  # noqa: E402
from hosts.diagram import DiagramVm, render_topology_svg  # noqa: E402
from hosts.models import Host  # noqa: E402
from numaportal.virt.connection import open_connection  # noqa: E402
from numaportal.virt.cpuset import parse_cpuset  # noqa: E402
from numaportal.virt.inventory import HostInventory, read_inventory  # noqa: E402
from vms import sync  # noqa: E402


def median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def synthetic(inventory: HostInventory, count: int) -> HostInventory:
    """The lab's domains repeated under new names and UUIDs, to see how writes scale."""
    base = inventory.domains
    domains = tuple(
        dataclasses.replace(base[i % len(base)], name=f"bench{i}", uuid=str(uuid.UUID(int=i + 1)))
        for i in range(count)
    )
    return dataclasses.replace(inventory, domains=domains)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="qemu:///system")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    setup_test_environment()
    # A database of its own: never the one a concurrent `make test` uses.
    if connection.vendor != "sqlite":  # SQLite's test database is in memory already
        connection.settings_dict.setdefault("TEST", {})["NAME"] = "bench_numaportal"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        conn = open_connection(args.uri, readonly=True)
        try:
            inventory = read_inventory(conn)
            read_ms = median_ms(lambda: read_inventory(conn), args.runs)
        finally:
            conn.close()
        running = sum(1 for d in inventory.domains if d.running)
        print(f"database: {connection.vendor}; libvirt: {args.uri}")
        print(
            f"read_inventory: {read_ms:.1f} ms median for {len(inventory.domains)} domains "
            f"({running} running)"
        )
        host = Host.objects.create(name="bench", uri=args.uri)
        for count in (len(inventory.domains), 100, 500):
            inv = inventory if count == len(inventory.domains) else synthetic(inventory, count)
            sync.apply_inventory(host, inv)  # first write creates the rows
            with CaptureQueriesContext(connection) as queries:
                sync.apply_inventory(host, inv)
            ms = median_ms(lambda inv=inv: sync.apply_inventory(host, inv), args.runs)
            print(f"apply_inventory, {count:4d} VMs: {ms:7.1f} ms median, {len(queries)} queries")

        topology = big_topology()
        vms = [
            DiagramVm(
                name=f"vm{i:03d}",
                uuid=str(uuid.UUID(int=i + 1)),
                url=f"/vms/bench/{uuid.UUID(int=i + 1)}/",
                vcpu_affinity={v: parse_cpuset(str((i * 4 + v) % 448)) for v in range(4)},
                pinned_vcpus=frozenset(range(4)),
            )
            for i in range(100)
        ]
        html = render_topology_svg(topology, vms)
        render_ms = median_ms(lambda: render_topology_svg(topology, vms), args.runs)
        print(
            f"diagram, 448 threads / 10 cells / 100 VMs: {render_ms:.1f} ms median, "
            f"{len(html) / 1024:.0f} KiB of HTML"
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
