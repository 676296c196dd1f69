"""Benchmark: a fleet-wide sync through Celery and Redis, with 1, 2 and 4 worker processes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/numaportal \\
        .venv/bin/python bench/fleet_sync.py [--hosts 500] [--vms 40] [--workers 1,2,4]

The fleet is simulated (:mod:`bench.fleet`): *hosts* test-driver host files of *vms* domains,
registered through the portal's own service, reached through real libvirt connections by
real ``celery worker`` processes (prefork, ``--concurrency N``) on a Redis database of its
own (``--redis-db``, default 7) and a throw-away database on DATABASE_URL's server. For
each worker count the whole fleet is queued at once ("Sync now" on every host: the periodic
sweep spreads the same work over its interval) and this reports:

- wall time from the first enqueue until every host's sync is stored, and hosts per second;
- the per-host sync time (the worker's own "succeeded in" figure): median, p90, p99, max;
- database queries per host sync (one sync in this process) and rows written per host
  (``pg_stat_user_tables`` inserts + updates + deletes over the round, read after the workers
  exited so their counters are flushed);
- worker memory (the RSS of the worker's processes, largest sum seen);
- Redis queue depth over time (sampled every second).

A first sync (every VM and vCPU row inserted) runs once with the largest worker count before
the timed rounds; the rounds are steady-state syncs (rows updated), what the periodic sync does.
Then the sampling fan-out: one libvirt sample per host (``hosts.tasks.sample_host_libvirt``),
all queued at once, timed the same way; and last the per-minute sample sweep as beat runs it
(``sample_enabled_hosts``: every host at its own phase within NUMAPORTAL_SAMPLE_SPREAD_S), whose
"at most N done in one second" shows the load is spread, not 500 at once.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_ARGS.add_argument("--hosts", type=int, default=500)
_ARGS.add_argument("--vms", type=int, default=40, help="domains per host")
_ARGS.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
_ARGS.add_argument("--redis-db", type=int, default=7)
_ARGS.add_argument("--timeout", type=float, default=600, help="seconds per round at most")
ARGS = _ARGS.parse_args()

QUEUE = "fleet-bench"
BROKER = f"redis://127.0.0.1:6379/{ARGS.redis_db}"
SIM_DIR = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
# Before Django is set up: this process queues the tasks, so it needs the bench's broker and
# queue, and it registers the hosts, so it must accept their URIs.
os.environ.update(
    {
        "NUMAPORTAL_SIMULATED_HOSTS_DIR": str(SIM_DIR),
        "CELERY_BROKER_URL": BROKER,
        "CELERY_RESULT_BACKEND": BROKER,
        "NUMAPORTAL_CENTRAL_QUEUE": QUEUE,
    }
)

import redis  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench import benchkit  # noqa: E402  (django.setup() has run)
from bench.fleet.register import register_fleet  # noqa: E402
from hosts.models import Host  # noqa: E402
from numaportal.queueing import central_queue, enqueue  # noqa: E402
from vms import requests, sync, tasks  # noqa: E402
from vms.models import VirtualMachine  # noqa: E402

_SUCCEEDED = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+: INFO/[^\]]+\] "
    r"Task (\S+)\[[0-9a-f-]+\] succeeded in ([0-9.]+)s",
    re.M,
)


@dataclass
class Round:
    label: str
    workers: int
    wall_s: float = 0.0
    done: int = 0
    task_s: list[float] = field(default_factory=list)
    rss_kib: int = 0
    depth: list[tuple[float, int]] = field(default_factory=list)
    rows: int = 0
    message_bytes: int = 0
    #: Most tasks that finished within one wall-clock second (the worker log's timestamps).
    peak_per_s: int = 0


def _worker_env(database_name: str) -> dict[str, str]:
    settings = connection.settings_dict
    url = (
        f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT'] or 5432}/"
        f"{database_name}"
    )
    return {**os.environ, "DATABASE_URL": url, "NUMAPORTAL_LIBVIRT_CONNECT_SLOTS": "8"}


def start_worker(concurrency: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = [
        str(ROOT / ".venv" / "bin" / "celery"),
        "-A",
        "numaportal",
        "worker",
        "--queues",
        QUEUE,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--hostname",
        f"fleet-bench-{concurrency}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    out = log.open("w")
    worker = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the bench worker did not start; its log:\n{log.read_text()}")
        time.sleep(0.2)
    return worker


def stop_worker(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def rss_kib(worker: subprocess.Popen) -> int:
    """The worker's processes' resident memory (the main process and its pool children)."""
    out = subprocess.run(
        ["ps", "-o", "rss=", "-g", str(worker.pid)], capture_output=True, text=True, check=False
    ).stdout
    return sum(int(line) for line in out.split() if line.strip().isdigit())


def rows_written() -> int:
    """Inserts, updates and deletes of every table so far (PostgreSQL's statistics)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        )
        return int(cursor.fetchone()[0])


def queue_syncs() -> None:
    with transaction.atomic():
        for host in Host.objects.filter(name__startswith="sim-hv"):
            requests.request_sync(host)


def queue_samples() -> None:
    for pk in Host.objects.filter(name__startswith="sim-hv").values_list("pk", flat=True):
        enqueue(tasks.sample_host_libvirt, [pk], queue=central_queue(), refused=print)


def run_round(
    label: str, concurrency: int, env: dict[str, str], queue_all, finished, total: int
) -> Round:
    result = Round(label, concurrency)
    log = SIM_DIR / f"worker-{label}-{concurrency}.log"
    worker = start_worker(concurrency, env, log)
    broker = redis.Redis.from_url(BROKER)
    before = rows_written()
    try:
        since = timezone.now()
        start = time.monotonic()
        queue_all()
        next_tick = start
        while True:
            now = time.monotonic()
            done = finished(since)
            if now >= next_tick:
                result.depth.append((now - start, broker.llen(QUEUE)))
                if not result.message_bytes:
                    head = broker.lindex(QUEUE, -1)  # the next message a worker takes
                    result.message_bytes = len(head) if head else 0
                result.rss_kib = max(result.rss_kib, rss_kib(worker))
                next_tick += 1.0
            if done >= total:
                result.wall_s = now - start
                result.done = done
                break
            if now - start > ARGS.timeout:
                result.wall_s, result.done = now - start, done
                print(f"  {label}: timed out with {done}/{total} done", file=sys.stderr)
                break
            time.sleep(0.05)
    finally:
        stop_worker(worker)
    result.rows = rows_written() - before
    done_at = _SUCCEEDED.findall(log.read_text())
    result.task_s = [float(s) for _at, _name, s in done_at]
    per_second: dict[str, int] = {}
    for at, _name, _s in done_at:
        per_second[at] = per_second.get(at, 0) + 1
    result.peak_per_s = max(per_second.values(), default=0)
    return result


def synced_since(since) -> int:
    return Host.objects.filter(
        name__startswith="sim-hv", sync_status=Host.SyncStatus.OK, last_sync_ok_at__gte=since
    ).count()


def sampled_since(since) -> int:
    return Host.objects.filter(name__startswith="sim-hv", last_sample_at__gte=since).count()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if values else 0


def report(r: Round, hosts: int) -> None:
    t = [s * 1000 for s in r.task_s]
    depth = ", ".join(f"{int(at)}s:{n}" for at, n in r.depth[:: max(1, len(r.depth) // 12)])
    print(
        f"{r.label:<11} workers={r.workers}: {r.done}/{hosts} hosts in {r.wall_s:6.1f} s "
        f"({r.done / r.wall_s if r.wall_s else 0:5.1f} hosts/s); per host ms median "
        f"{statistics.median(t) if t else 0:.0f} p90 {pct(t, 90):.0f} p99 {pct(t, 99):.0f} "
        f"max {max(t) if t else 0:.0f}; rows written/host {r.rows / max(r.done, 1):.0f}; "
        f"worker RSS {r.rss_kib / 1024:.0f} MiB; a queued message {r.message_bytes} bytes; "
        f"at most {r.peak_per_s} done in one second"
    )
    print(f"{'':<11} queue depth (time:messages): {depth}")


def main() -> None:
    if connection.vendor != "postgresql":
        sys.exit("fleet_sync.py measures PostgreSQL: set DATABASE_URL=postgres://…")
    counts = [int(n) for n in ARGS.workers.split(",")]
    broker = redis.Redis.from_url(BROKER)
    broker.flushdb()
    with benchkit.throwaway_database("bench_fleet"):
        env = _worker_env(connection.settings_dict["NAME"])
        start = time.perf_counter()
        register_fleet(SIM_DIR, ARGS.hosts, ARGS.vms)
        print(
            f"database: postgresql; broker: {BROKER}; fleet: {ARGS.hosts} simulated hosts x "
            f"{ARGS.vms} domains ({ARGS.hosts * ARGS.vms} VMs), registered in "
            f"{time.perf_counter() - start:.1f} s; machine: {os.cpu_count()} CPUs"
        )
        first = run_round("first sync", max(counts), env, queue_syncs, synced_since, ARGS.hosts)
        report(first, ARGS.hosts)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            size_mib = cursor.fetchone()[0] / 2**20
        print(
            f"{'':<11} VMs stored: {VirtualMachine.objects.count()}; database size "
            f"{size_mib:.0f} MiB"
        )
        one = Host.objects.filter(name__startswith="sim-hv").order_by("pk").first()
        with CaptureQueriesContext(connection) as queries:
            sync.sync_host(one.pk)
        print(f"{'':<11} queries per host sync: {len(queries.captured_queries)}")
        for n in counts:
            r = run_round("steady sync", n, env, queue_syncs, synced_since, ARGS.hosts)
            report(r, ARGS.hosts)
        for n in counts:
            r = run_round("sample", n, env, queue_samples, sampled_since, ARGS.hosts)
            report(r, ARGS.hosts)
        # The per-minute sweep as beat runs it: each host at its own phase within
        # NUMAPORTAL_SAMPLE_SPREAD_S (30 s), not 500 at once.
        r = run_round(
            "sample sweep",
            max(counts),
            env,
            requests.sample_enabled_hosts,
            sampled_since,
            ARGS.hosts,
        )
        report(r, ARGS.hosts)
    broker.flushdb()
    shutil.rmtree(SIM_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
