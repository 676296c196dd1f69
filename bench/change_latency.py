"""Benchmark: change latency (submit -> succeeded) through Celery and Redis on the real lab
daemon, on a host with 1,000 defined domains.

    .venv/bin/python bench/change_latency.py [--domains 1000] [--changes 60]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/numaportal \
        .venv/bin/python bench/change_latency.py

What it does, on ``qemu:///system`` (``scripts/libvirt-lab start`` first):

1. defines ``--domains`` domains of its own, named ``numabench-<run>-<n>`` (diskless, like the
   lab's small VMs): one running (the target of the changes), the rest shut off. Nothing it
   did not define is touched, and everything it defined is undefined at the end;
2. registers the daemon as a host in a throw-away database (PostgreSQL: a database of its own
   on DATABASE_URL's server; otherwise a temporary SQLite file) and syncs it once (the
   whole-host sync a change used to wait for, timed for comparison);
3. starts a real Celery worker (``celery -A numaportal worker``, one process, a queue of its
   own) on that database and the Redis broker, and requests ``--changes`` changes one after
   another through ``changes.requests.request_change``: the target's emulator pinned to CPU 0,
   then 1, then 0, ... (live), each submitted when the previous one has succeeded — the way an
   operator or a playbook works through a list;
4. reports submit -> succeeded latency (p50, p90, p99, max) and the worker's own time per
   change (started -> finished).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "numaportal.settings")

import django  # noqa: E402

django.setup()

import libvirt  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from changes.models import Change  # noqa: E402
from changes.requests import request_change  # noqa: E402
from hosts.models import Host  # noqa: E402
from numaportal.roles import OPERATOR_GROUP  # noqa: E402
from vms import sync  # noqa: E402
from vms.models import VirtualMachine  # noqa: E402

URI = "qemu:///system"
PREFIX = "numabench-"
DOMAIN_XML = """\
<domain type='qemu'>
  <name>{name}</name>
  <metadata><bench:bench xmlns:bench="urn:numaportal:bench"/></metadata>
  <memory unit='MiB'>128</memory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices><serial type='pty'/></devices>
</domain>
"""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def define_domains(conn: libvirt.virConnect, run: str, count: int) -> list[libvirt.virDomain]:
    domains = []
    for n in range(count):
        domains.append(conn.defineXML(DOMAIN_XML.format(name=f"{PREFIX}{run}-{n:04d}")))
    domains[0].create()  # the target of the changes: running, so live changes apply
    return domains


def remove_domains(conn: libvirt.virConnect, run: str) -> int:
    removed = 0
    for dom in conn.listAllDomains():
        if not dom.name().startswith(f"{PREFIX}{run}-"):
            continue
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            dom.undefine()
            removed += 1
    return removed


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


def start_worker(queue: str, env: dict[str, str]) -> subprocess.Popen:
    celery = str(Path(sys.executable).parent / "celery")
    worker = subprocess.Popen(
        [
            celery,
            "-A",
            "numaportal",
            "worker",
            "--queues",
            queue,
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--hostname",
            f"bench-{queue}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    return worker


def wait_finished(change: Change, timeout: float = 60.0) -> Change:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Change.objects.filter(pk=change.pk).values_list("status", flat=True).first()
        if status in Change.FINISHED_STATUSES:
            change.refresh_from_db()
            return change
        time.sleep(0.002)
    raise TimeoutError(f"change {change.pk} did not finish within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    warnings.filterwarnings("ignore", "No directory at", UserWarning)
    logging.getLogger("changes").setLevel(logging.WARNING)  # one INFO line per change otherwise
    setup_test_environment()
    tmp = None
    if connection.vendor == "sqlite":
        tmp = tempfile.mkdtemp(prefix="bench-changes-")
        connection.settings_dict.setdefault("TEST", {})["NAME"] = str(Path(tmp) / "bench.db")
    else:
        connection.settings_dict.setdefault("TEST", {})["NAME"] = "bench_numaportal_changes"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    run = secrets.token_hex(3)
    conn = libvirt.open(URI)
    worker = None
    try:
        print(f"database: {connection.vendor} ({connection.settings_dict['NAME']})")
        start = time.perf_counter()
        domains = define_domains(conn, run, args.domains)
        target_name = domains[0].name()
        print(
            f"defined {args.domains} domains ({target_name} running) in "
            f"{time.perf_counter() - start:.1f} s; the daemon has {len(conn.listAllDomains())}"
        )
        queue = f"bench-{run}"
        host = Host.objects.create(name="lab", uri=URI, worker_queue=queue)
        start = time.perf_counter()
        sync.sync_host(host.pk)
        host.refresh_from_db()
        sync_s = time.perf_counter() - start
        vms = VirtualMachine.objects.filter(host=host).count()
        print(f"whole-host sync: {sync_s:.2f} s for {vms} VMs ({host.sync_status})")
        target = VirtualMachine.objects.get(host=host, name=target_name)

        user = get_user_model().objects.create_user("bench-operator")
        user.groups.add(Group.objects.get(name=OPERATOR_GROUP))
        env = {**os.environ, "DATABASE_URL": database_url()}
        env.setdefault("CELERY_BROKER_URL", settings.CELERY_BROKER_URL)
        env.setdefault("CACHE_URL", settings.CACHES["default"]["LOCATION"])
        worker = start_worker(queue, env)

        latencies, worker_ms = [], []
        for i in range(args.warmup + args.changes):
            submitted = time.perf_counter()  # the request itself counts: validate, record, queue
            change = request_change(
                actor=user,
                target=target,
                kind="emulatorpin",
                params={"cpuset": str(i % 2)},
                scope="live",
                reason=f"bench change {i}",
            )
            done = wait_finished(change, timeout=120 if i == 0 else 30)
            elapsed = time.perf_counter() - submitted
            if done.status != Change.Status.SUCCEEDED:
                raise SystemExit(f"change {i} {done.status}: {done.error}")
            if i >= args.warmup:  # the first ones include the worker's start-up
                latencies.append(elapsed * 1000)
                worker_ms.append(done.duration_s * 1000)
        print(
            f"{args.changes} changes (emulatorpin, live), one after another, on a host with "
            f"{vms} domains:"
        )
        print(
            f"  submit -> succeeded: p50 {percentile(latencies, 50):.0f} ms, "
            f"p90 {percentile(latencies, 90):.0f} ms, p99 {percentile(latencies, 99):.0f} ms, "
            f"max {max(latencies):.0f} ms (mean {statistics.mean(latencies):.0f} ms)"
        )
        print(
            f"  on the worker (started -> finished): p50 {percentile(worker_ms, 50):.0f} ms, "
            f"max {max(worker_ms):.0f} ms"
        )
        target.refresh_from_db()
        print(f"  the VM row after the last change: emulatorpin {target.emulatorpin!r}")
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        removed = remove_domains(conn, run)
        conn.close()
        print(f"undefined {removed} bench domains")
        connection.creation.destroy_test_db(old_name, verbosity=0)
        if tmp:
            with contextlib.suppress(OSError):
                Path(tmp, "bench.db").unlink()
                Path(tmp).rmdir()


if __name__ == "__main__":
    main()
