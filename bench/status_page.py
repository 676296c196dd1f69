"""Benchmark: the status page's server time, alone and while clients poll it in a loop.

    .venv/bin/python bench/status_page.py [--runs 21] [--pollers 4] [--seconds 10]

Runs against a throw-away database (``bench.benchkit``) with this machine's real broker, cache
and libvirt (CELERY_BROKER_URL, CACHE_URL, NUMAPORTAL_LAB_URI); two workers' "alive" reports
are written to the cache as ``numaportal.liveness`` does (no worker needs to run).

1. Django's test client as a user of the "viewer" group: ``/`` and the ``/status/`` fragment,
   median / max server time of ``--runs`` requests after a warm-up, and each check alone.
2. The issue's finding (four clients looping on the status page took a viewer's page from
   0.03 s to 1.3 s while every status request waited a 1 s broadcast ping): a real gunicorn
   with the Procfile's 2 workers on the throw-away SQLite file (SQLite only), ``--pollers``
   clients requesting ``/status/`` back to back for ``--seconds``, and a viewer requesting
   ``/hosts/`` every 0.25 s meanwhile; the viewer's latency with and without the pollers.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse

# bench.benchkit sets Django up; the project modules below need it.
from bench import benchkit
from numaportal import liveness
from numaportal.roles import VIEWER_GROUP
from web import status

ROOT = Path(__file__).resolve().parent.parent
CHECKS = (
    status.check_database,
    status.check_broker,
    status.check_workers,
    status.check_beat,
    status.check_libvirt,
)
WORKERS = {"portal@bench": ["celery"], "lab@bench": ["host.lab"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, cookie: str) -> tuple[int, float]:
    """One request on a new connection (gunicorn's sync workers close each one): status, s."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Cookie": f"sessionid={cookie}"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    finally:
        conn.close()


def viewer_latency(port: int, cookie: str, seconds: float) -> list[float]:
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for hostname, queues in WORKERS.items():  # the reports expire after 15 s
            liveness.report(hostname, queues)
        code, took = get(port, "/hosts/", cookie)
        assert code == 200, code
        times.append(took)
        time.sleep(0.25)
    return times


def under_load(cookie: str, pollers: int, seconds: float) -> None:
    db = connection.settings_dict["NAME"]
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    server = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "numaportal.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                if get(port, "/login/", "")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        get(port, "/hosts/", cookie)  # warm both workers a little
        idle = viewer_latency(port, cookie, seconds / 2)
        stop = threading.Event()
        polls: list[tuple[int, float]] = []

        def poll() -> None:
            while not stop.is_set():
                polls.append(get(port, "/status/", cookie))

        threads = [threading.Thread(target=poll) for _ in range(pollers)]
        for thread in threads:
            thread.start()
        busy = viewer_latency(port, cookie, seconds)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    codes = sorted({code for code, _ in polls})
    poll_times = [took for _, took in polls]
    print(
        f"  gunicorn, 2 workers: viewer's /hosts/ idle median {statistics.median(idle) * 1000:.0f}"
        f" ms (max {max(idle) * 1000:.0f}); with {pollers} clients looping on /status/ median"
        f" {statistics.median(busy) * 1000:.0f} ms (max {max(busy) * 1000:.0f}), {len(busy)}"
        f" requests"
    )
    print(
        f"  the pollers: {len(polls)} status requests in {seconds:.0f} s (HTTP {codes}),"
        f" median {statistics.median(poll_times) * 1000:.0f} ms each"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--pollers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    with benchkit.throwaway_database("bench_numaportal_status_page"):
        user = get_user_model().objects.create_user("viewer", password="bench-password-123")
        user.groups.add(user.groups.model.objects.get(name=VIEWER_GROUP))
        client = Client()
        client.force_login(user)
        for hostname, queues in WORKERS.items():
            liveness.report(hostname, queues)
        try:
            print(f"{args.runs} runs each after one warm-up, as a viewer")
            for name in ("home", "status-fragment"):
                url = reverse(name)
                response = client.get(url)
                assert response.status_code == 200, (url, response.status_code)
                median, top = benchkit.median_max_ms(lambda url=url: client.get(url), args.runs)
                print(f"  GET {url:<10} median {median:6.1f} ms, max {top:6.1f} ms")
            checks = ", ".join(
                f"{check.__name__} {benchkit.median_max_ms(check, args.runs)[0]:.1f} ms"
                for check in CHECKS
            )
            print(f"  checks (median): {checks}")
            if connection.vendor == "sqlite" and args.pollers:
                under_load(client.cookies["sessionid"].value, args.pollers, args.seconds)
        finally:
            for hostname in WORKERS:
                liveness.forget(hostname)


if __name__ == "__main__":
    main()
