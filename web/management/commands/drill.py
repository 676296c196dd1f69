"""``manage.py drill`` (``scripts/drill``): the failure drills of :mod:`web.drills` against the
running portal, `make run`'s settings, database, broker and workers.

``--list`` names them; ``--only NAME`` runs one; a drill that stops a daemon runs only with
``--yes``. redis-down stops only the Redis that ``scripts/ensure-redis`` started (the pid in
``.run/redis.pid`` is the one answering on the broker URL) and starts it again with
``scripts/ensure-redis``. The drills act on lab VM numalab-small1 of host "lab". The exit
status is non-zero if any drill failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
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
from vms.models import VirtualMachine
from web import drills

#: Where scripts/ensure-redis keeps the pid file of the Redis it started.
RUN_DIR = Path(settings.BASE_DIR) / ".run"
LAB_HOST = "lab"
LAB_VM = "numalab-small1"

#: name -> (what it does, whether it stops a daemon)
DRILLS = {
    "redis-down": (
        "stop make run's Redis; pages render, a change fails at once; start it; changes go "
        "through again",
        True,
    ),
    "concurrent-changes": (
        f"conflicting live emulatorpin changes of {LAB_VM} at once through make run's "
        "workers; none lost, none overlapping; the VM's pin restored afterwards",
        False,
    ),
}


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


def _fetcher(vm: VirtualMachine, user: Any) -> drills.PageFetcher:
    """The pages rendered in this process with make run's settings, as *user*."""
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(user)

    def fetch() -> list[tuple[str, int, float]]:
        pages = []
        for path in drills.pages_of(vm):
            started = time.monotonic()
            response = client.get(path)
            pages.append((path, response.status_code, time.monotonic() - started))
        return pages

    return fetch


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
        users = get_user_model().objects.filter(is_superuser=True, is_active=True)
        user = users.filter(username=options["user"]).first() if options["user"] else users.first()
        if user is None:
            raise CommandError("no such active superuser: pass --user")
        failed = []
        for name in names:
            if name == "redis-down":
                result = self._restoring(
                    vm, user, lambda: drills.redis_down(vm, user, redis_control, _fetcher(vm, user))
                )
            else:
                result = self._restoring(
                    vm,
                    user,
                    lambda: drills.concurrent_changes(
                        vm, user, count=options["count"], submitters=min(10, options["count"])
                    ),
                )
            self.stdout.write(result.report())
            if not result.ok:
                failed.append(name)
        if failed:
            raise CommandError(f"failed: {', '.join(failed)}")

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
