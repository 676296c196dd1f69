"""Benchmark: the host page of a dense host and of a crowded small one, and the status page.

    .venv/bin/python bench/host_page.py [--runs 9] [--no-memory] [--no-freeze]

Runs against a throw-away database (``bench.benchkit``: a temporary SQLite file, or a database
of its own on DATABASE_URL's PostgreSQL server) and builds, without libvirt:

- ``dense``: the issue's largest host, 448 threads in 8 CPU cells + 2 memory-only cells
  (``bench.dense_host``), with 30 and then 300 running VMs of 2 vCPUs each, every vCPU pinned
  to one thread of the VM's cell (VM i on cell i mod 8, so 300 VMs over-commit some threads)
  and its emulator pinned to the whole cell;
- ``lab``: the lab's 2-CPU, 1-cell host (``tests/fixtures/capabilities``) with 1,003 small
  VMs of 1 vCPU, unpinned (floating over both CPUs);

each VM with its memory on its cell as an on-host worker stores it (``--no-memory``: none).
Every page is requested with Django's test client as a superuser (every button rendered), once
to warm up and count the SQL queries, then ``--runs`` times: median and maximum server time
(and the median with ``Accept-Encoding: gzip``), HTML bytes uncompressed and gzipped
(``gzip -9``), queries; for the dense host also the drawing of one collapsed cell, which the
page loads when it is opened. The status page (``/`` and the ``/status/`` fragment) is timed
with the real broker, cache and libvirt of this machine (CELERY_BROKER_URL, CACHE_URL,
NUMAPORTAL_LAB_URI), and each of its checks alone. Before measuring, the objects alive are
frozen out of the garbage collector's scans, as ``numaportal/wsgi.py`` does in the web process
(``--no-freeze``: not; then every few requests of a big page pay a full collection).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

# bench.benchkit sets Django up; the project modules below need it.
from bench import benchkit
from bench.dense_host import big_topology, capabilities_xml
from hosts.models import Host
from numaportal import liveness
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import HostTopology, parse_capabilities
from tests.web.conftest import make_host
from vms.models import VcpuPin, VirtualMachine, VmCellMemory
from web import status

ROOT = Path(__file__).resolve().parent.parent
LAB_CAPABILITIES = ROOT / "tests" / "fixtures" / "capabilities" / "x86_64-1node-2cpu-lab.xml"
GIB_KIB = 1 << 20
#: The status page's rows, each timed alone.
STATUS_CHECKS = (
    status.check_database,
    status.check_broker,
    status.check_workers,
    status.check_beat,
    status.check_libvirt,
)


@dataclass(frozen=True)
class Guest:
    """One VM to create: its pins (vCPU -> CPU, or None: floating), emulator pin, cell."""

    name: str
    vcpus: dict[int, int | None]
    emulatorpin: str
    cell: int
    last_cpu: dict[int, int]


def on_host_worker_host(name: str, xml: str) -> Host:
    """A synced-looking host (``tests.web.conftest.make_host``: cells a quarter free, CPU
    rows) with an on-host worker that sampled it just now."""
    return make_host(
        name, xml=xml, worker_queue=f"host.{name}", last_sample_at=timezone.now(), numa_balancing=0
    )


def add_guests(host: Host, guests: list[Guest], all_cpus: str, *, memory: bool) -> None:
    """Running VMs with their vCPU rows (and memory rows), in bulk."""
    now = timezone.now()
    start = host.vms.count()
    vms = VirtualMachine.objects.bulk_create(
        VirtualMachine(
            host=host,
            uuid=uuid.UUID(int=(host.pk << 32) + start + i + 1),
            name=g.name,
            state="running",
            last_seen_at=now,
            vcpu_max_config=len(g.vcpus),
            vcpu_current_config=len(g.vcpus),
            vcpu_max_live=len(g.vcpus),
            vcpu_current_live=len(g.vcpus),
            memory_kib=GIB_KIB,
            current_memory_kib=GIB_KIB,
            emulatorpin=g.emulatorpin,
            emulatorpin_config=g.emulatorpin,
            pinning=(
                VirtualMachine.Pinning.PINNED
                if all(cpu is not None for cpu in g.vcpus.values())
                else VirtualMachine.Pinning.UNPINNED
            ),
            cells=str(g.cell),
            memory_cells=str(g.cell),
        )
        for i, g in enumerate(guests)
    )
    VcpuPin.objects.bulk_create(
        VcpuPin(
            vm=vm,
            vcpu=vcpu,
            online=True,
            pin_live="" if cpu is None else str(cpu),
            pin_config="" if cpu is None else str(cpu),
            affinity=all_cpus if cpu is None else str(cpu),
            last_cpu=g.last_cpu[vcpu],
            state="running",
        )
        for vm, g in zip(vms, guests, strict=True)
        for vcpu, cpu in g.vcpus.items()
    )
    if memory:
        VmCellMemory.objects.bulk_create(
            VmCellMemory(vm=vm, cell_id=g.cell, sampled_at=now, heap_mib=200, private_mib=800)
            for vm, g in zip(vms, guests, strict=True)
        )


def dense_guests(topology: HostTopology, first: int, count: int) -> list[Guest]:
    """VM i on CPU cell i mod 8: vCPU v pinned to thread (2 * (i // 8) + v) mod 56 of the cell,
    the emulator to the whole cell."""
    cpu_cells = [cell for cell in topology.cells if cell.cpus]
    guests = []
    for i in range(first, first + count):
        cell = cpu_cells[i % len(cpu_cells)]
        ids = sorted(cell.cpu_ids)
        pins = {v: ids[(2 * (i // len(cpu_cells)) + v) % len(ids)] for v in range(2)}
        guests.append(Guest(f"dense-vm{i:03d}", pins, format_cpuset(ids), cell.id, pins))
    return guests


def lab_guests(count: int) -> list[Guest]:
    return [Guest(f"lab-vm{i:04d}", {0: None}, "", 0, {0: i % 2}) for i in range(count)]


@dataclass(frozen=True)
class Measured:
    median_ms: float
    max_ms: float
    #: median with ``Accept-Encoding: gzip`` (the time GZipMiddleware adds, when installed)
    gzip_median_ms: float
    html_bytes: int
    gzip_bytes: int
    queries: int


def measure(client: Client, url: str, runs: int) -> Measured:
    response = client.get(url)  # warm-up
    assert response.status_code == 200, (url, response.status_code)
    queries = benchkit.count_queries(lambda: client.get(url))
    median, top = benchkit.median_max_ms(lambda: client.get(url), runs)
    packed, _ = benchkit.median_max_ms(lambda: client.get(url, HTTP_ACCEPT_ENCODING="gzip"), runs)
    body = response.content
    return Measured(median, top, packed, len(body), len(gzip.compress(body)), queries)


def report(label: str, m: Measured) -> None:
    print(
        f"  {label:<44} median {m.median_ms:6.1f} ms ({m.gzip_median_ms:6.1f} gzip),"
        f" max {m.max_ms:6.1f} ms, {m.html_bytes / 1024:7.1f} KiB"
        f" ({m.gzip_bytes / 1024:6.1f} KiB gzipped), {m.queries:3d} queries"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--no-memory", action="store_true", help="no VM memory rows")
    parser.add_argument(
        "--no-freeze", action="store_true", help="leave the start-up objects to the GC's scans"
    )
    args = parser.parse_args()
    memory = not args.no_memory

    with benchkit.throwaway_database("bench_numaportal_host_page"):
        user = get_user_model().objects.create_superuser("bench", "", "bench-password-123")
        client = Client()
        client.force_login(user)

        topology = big_topology()
        dense = on_host_worker_host("dense", capabilities_xml(topology))
        all_dense = format_cpuset(topology.cpu_ids)
        lab_xml = LAB_CAPABILITIES.read_text()
        lab_topology = parse_capabilities(lab_xml)
        lab = on_host_worker_host("lab", lab_xml)
        add_guests(lab, lab_guests(1003), format_cpuset(lab_topology.cpu_ids), memory=memory)

        if not args.no_freeze:  # what numaportal/wsgi.py does once the web process is up
            gc.collect()
            gc.freeze()
        print(
            f"{args.runs} runs each after one warm-up; VM memory rows: {'yes' if memory else 'no'};"
            f" start-up objects frozen: {'no' if args.no_freeze else 'yes'}"
        )
        done = 0
        for count in (30, 300):
            add_guests(dense, dense_guests(topology, done, count - done), all_dense, memory=memory)
            done = count
            report(
                f"448 threads / 10 cells, {count} pinned VMs",
                measure(client, reverse("hosts:detail", args=[dense.name]), args.runs),
            )
            report(
                "  its cell 0 drawing, loaded when opened",
                measure(client, reverse("hosts:cell", args=[dense.name, 0]), args.runs),
            )
        report(
            "lab: 2 CPUs / 1 cell, 1,003 VMs",
            measure(client, reverse("hosts:detail", args=[lab.name]), args.runs),
        )
        # two workers' reports, as numaportal.liveness writes them (no worker runs here)
        workers = {"portal@bench": ["celery"], "lab@bench": ["host.lab"]}
        for hostname, queues in workers.items():
            liveness.report(hostname, queues)
        for name in ("home", "status-fragment"):
            report(f"status: GET {reverse(name)}", measure(client, reverse(name), args.runs))
        checks = ", ".join(
            f"{check.__name__} {benchkit.median_max_ms(check, args.runs)[0]:.1f} ms"
            for check in STATUS_CHECKS
        )
        print(f"  status checks (median): {checks}")
        for hostname in workers:
            liveness.forget(hostname)


if __name__ == "__main__":
    main()
