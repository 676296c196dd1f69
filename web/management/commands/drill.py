"""``manage.py drill`` (``scripts/drill``): the failure drills of :mod:`web.drills` against the
running portal, `make run`'s settings, database, broker and workers.

``--list`` names them; ``--only NAME`` runs one; a drill that stops a daemon runs only with
``--yes``. redis-down stops only the Redis that ``scripts/ensure-redis`` started (the pid in
``.run/redis.pid`` is the one answering on the broker URL) and starts it again with
``scripts/ensure-redis``. libvirtd-stopped and worker-killed-running stop or pause only the
lab's libvirtd (``scripts/libvirt-lab``, serving host "lab" as qemu:///system) and start it
again with ``scripts/libvirt-lab start``. The worker-killed drills kill a worker of their own
(never one of make run's) and reconcile only their own change. The drills act on lab VM
numalab-small1 of host "lab". The exit status is non-zero if any drill failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.test import Client

from changes.kinds.base import snapshot_dict, vm_domain
from changes.models import Change
from changes.requests import request_change
from hosts.models import Host
from vms.models import VirtualMachine
from web import drills
from web.drill_worker import DrillWorker

#: Where scripts/ensure-redis keeps the pid file of the Redis it started.
RUN_DIR = Path(settings.BASE_DIR) / ".run"
LAB_HOST = "lab"
LAB_VM = "numalab-small1"

#: name -> (what it does, whether it stops or pauses a daemon: those need --yes)
DRILLS = {
    "redis-down": (
        "stop make run's Redis; pages render, a change and a sync fail at once; start it; "
        "changes go through again",
        True,
    ),
    "libvirtd-stopped": (
        f"stop the libvirtd of host {LAB_HOST!r} while a sync of it is in flight; it shows "
        "libvirt's error, the other hosts sync as before; start it; the next sync succeeds",
        True,
    ),
    "worker-killed": (
        f"a worker of the drill's own is SIGKILLed while its change of {LAB_VM} waits for the "
        "VM's lock; the record ends reconciled against the host",
        False,
    ),
    "worker-killed-running": (
        f"the same while the change is running (the libvirtd of host {LAB_HOST!r} paused for "
        "a few seconds)",
        True,
    ),
    "concurrent-changes": (
        f"conflicting live emulatorpin changes of {LAB_VM} at once through make run's "
        "workers; none lost, none overlapping; the VM's pin restored afterwards",
        False,
    ),
}
#: The thresholds the worker-killed drills reconcile their own change with (the portal's are
#: NUMAPORTAL_CHANGE_QUEUED_TIMEOUT and the task's hard time limit, minutes).
DRILL_THRESHOLD_S = 3.0


class MakeRunRedis:
    """The Redis of the broker URL, if scripts/ensure-redis started it; else refused."""

    def __init__(self) -> None:
        self.url = settings.CELERY_BROKER_URL
        self.pid_file = RUN_DIR / "redis.pid"

    def pid(self) -> int:
        """The pid of make run's Redis; CommandError if the Redis answering is not it."""
        refuse = CommandError("Redis was not started by make run: not stopping it")
        try:
            pid = int(self.pid_file.read_text().strip())
            answering = int(redis.Redis.from_url(self.url).info("server")["process_id"])
        except (OSError, ValueError, redis.RedisError) as exc:
            raise refuse from exc
        if pid != answering:
            raise refuse
        return pid

    def stop(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def start(self) -> None:
        subprocess.run(
            [str(Path(settings.BASE_DIR) / "scripts" / "ensure-redis")],
            check=True,
            env={**os.environ, "CELERY_BROKER_URL": self.url},
        )


class LabLibvirtd:
    """The lab's system libvirtd (``scripts/libvirt-lab``: pid file /run/libvirtd.pid) serving
    host "lab"; refused if host "lab" is not on it or the pid file names another process."""

    PID_FILE = Path("/run/libvirtd.pid")

    def __init__(self, host: Host) -> None:
        self.host = host

    def pid(self) -> int:
        refuse = CommandError(
            f"host {self.host.name!r} is not served by the lab's libvirtd "
            f"(scripts/libvirt-lab, {self.PID_FILE}): not stopping it"
        )
        try:
            pid = int(self.PID_FILE.read_text().strip())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError) as exc:
            raise refuse from exc
        if comm != "libvirtd" or self.host.uri != "qemu:///system":
            raise refuse
        return pid

    def pause(self) -> None:
        os.kill(self.pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid(), signal.SIGCONT)

    def stop(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)  # a paused daemon acts on SIGTERM once continued
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def start(self) -> None:
        log = RUN_DIR / "drill-libvirt-lab.log"
        RUN_DIR.mkdir(exist_ok=True)
        with log.open("w") as out:
            subprocess.run(
                [str(Path(settings.BASE_DIR) / "scripts" / "libvirt-lab"), "start"],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )


@contextlib.contextmanager
def _own_worker(options: dict[str, str]) -> Iterator[DrillWorker]:
    """A worker process of the drill's own, on a queue of its own that this process's
    requests go to; killed (if the drill did not) and forgotten afterwards."""
    queue = f"drill-{uuid.uuid4().hex[:8]}"
    old_queue = settings.NUMAPORTAL_CENTRAL_QUEUE
    RUN_DIR.mkdir(exist_ok=True)
    worker = DrillWorker(
        queue, RUN_DIR / "drill-worker.log", {"NUMAPORTAL_CENTRAL_QUEUE": queue, **options}
    )
    settings.NUMAPORTAL_CENTRAL_QUEUE = queue
    try:
        yield worker
    finally:
        settings.NUMAPORTAL_CENTRAL_QUEUE = old_queue
        worker.close()


def _client(user: Any) -> Client:
    """Pages rendered in this process with make run's settings, as *user*."""
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(user)
    return client


def _lab_vm() -> VirtualMachine:
    vm = (
        VirtualMachine.objects.select_related("host")
        .filter(host__name=LAB_HOST, name=LAB_VM)
        .first()
    )
    if vm is None or not vm.host.cpus.exists():
        raise CommandError(f"{LAB_VM} on host {LAB_HOST!r} is not synced: run make run first")
    return vm


def _emulatorpin(vm: VirtualMachine) -> str:
    with vm_domain(Change(host=vm.host, vm=vm), readonly=True) as dom:
        return snapshot_dict(dom)["emulatorpin_live"]


class Command(BaseCommand):
    help = "Run the failure drills against the running portal (make run)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--list", action="store_true", help="name the drills and stop")
        parser.add_argument("--only", choices=sorted(DRILLS), help="run this drill only")
        parser.add_argument(
            "--yes", action="store_true", help="allow the drills that stop a daemon (Redis)"
        )
        parser.add_argument("--count", type=int, default=20, help="concurrent-changes: changes")
        parser.add_argument("--user", help="the account the drills act as (a superuser)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            for name, (what, stops) in DRILLS.items():
                self.stdout.write(f"{name}: {what}{' (stops a daemon: --yes)' if stops else ''}")
            return
        names = [options["only"]] if options["only"] else list(DRILLS)
        stopping = [n for n in names if DRILLS[n][1]]
        if stopping and not options["yes"]:
            raise CommandError(f"{', '.join(stopping)} stops a daemon: run again with --yes")
        redis_control = MakeRunRedis()
        if "redis-down" in names:
            redis_control.pid()  # refused before anything is done
        vm = _lab_vm()
        libvirtd = LabLibvirtd(vm.host)
        if {"libvirtd-stopped", "worker-killed-running"} & set(names):
            libvirtd.pid()
        users = get_user_model().objects.filter(is_superuser=True, is_active=True)
        user = users.filter(username=options["user"]).first() if options["user"] else users.first()
        if user is None:
            raise CommandError("no such active superuser: pass --user")
        runs: dict[str, Callable[[], drills.DrillResult]] = {
            "redis-down": lambda: self._restoring(
                vm,
                user,
                lambda: drills.redis_down(
                    vm,
                    user,
                    redis_control,
                    drills.client_fetcher(_client(user), drills.pages_of(vm)),
                ),
            ),
            "libvirtd-stopped": lambda: self._libvirtd_stopped(vm.host, libvirtd, user),
            "worker-killed": lambda: self._worker_killed(vm, user),
            "worker-killed-running": lambda: self._worker_killed(vm, user, libvirtd),
            "concurrent-changes": lambda: self._restoring(
                vm,
                user,
                lambda: drills.concurrent_changes(
                    vm, user, count=options["count"], submitters=min(10, options["count"])
                ),
            ),
        }
        failed = []
        for name in names:
            started = time.monotonic()
            result = runs[name]()
            self.stdout.write(result.report())
            self.stdout.write(f"({name} took {time.monotonic() - started:.1f} s)")
            if not result.ok:
                failed.append(name)
        if failed:
            raise CommandError(f"failed: {', '.join(failed)}")

    def _libvirtd_stopped(self, host: Host, libvirtd: LabLibvirtd, user: Any) -> drills.DrillResult:
        others = list(
            Host.objects.active()
            .filter(enabled=True, sync_status=Host.SyncStatus.OK)
            .exclude(pk=host.pk)
        )
        fetch = drills.client_fetcher(_client(user), drills.host_pages([host, *others]))
        return drills.libvirtd_stopped(host, others, libvirtd, fetch, timeout=120)

    def _worker_killed(
        self, vm: VirtualMachine, user: Any, libvirtd: LabLibvirtd | None = None
    ) -> drills.DrillResult:
        # Waiting for the VM's lock longer than the drill takes to kill it.
        with _own_worker({"NUMAPORTAL_CHANGE_LOCK_WAIT": "120"}) as worker:
            return drills.worker_killed(
                vm,
                user,
                worker,
                queued_older_than_s=DRILL_THRESHOLD_S,
                daemon=libvirtd,
                running_older_than_s=DRILL_THRESHOLD_S,
            )

    def _restoring(
        self, vm: VirtualMachine, user: Any, run: Callable[[], drills.DrillResult]
    ) -> drills.DrillResult:
        """*run()*, then the VM's live emulator pin as it was before, through a change."""
        pin = _emulatorpin(vm)
        try:
            return run()
        finally:
            self._restore(vm, user, pin)

    def _restore(self, vm: VirtualMachine, user: Any, pin: str | None) -> None:
        if not pin:
            self.stdout.write(f"{vm.name} had no live emulator pin to restore")
            return
        restore = request_change(
            actor=user,
            target=vm,
            kind="emulatorpin",
            params={"cpuset": pin},
            scope="live",
            reason="drill: restore the emulator pin",
        )
        counts = drills.wait_ended([restore.pk], 120)
        self.stdout.write(f"restored emulatorpin {pin} of {vm.name}: {counts}")
