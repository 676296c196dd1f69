"""One writer process of the SQLite concurrency test (tests/web/test_sqlite_concurrency.py).

Run as ``python -m tests.web.sqlite_writers ROLE SECONDS`` from the project directory, with
``DATABASE_URL=sqlite:///<file>`` in the environment. Roles, each what one portal process
writes:

- ``setup``: migrate, an operator user, the host ``lab`` on ``test:///default``, its first sync
  (run once, before the others);
- ``web``: what the VM change form does (``request_change`` in ``atomic()``), the task enqueued
  on commit to the broker;
- ``sync``: a worker's ``vms.sync.sync_host`` and ``vms.sampling.sample_host`` of the host;
- ``worker``: a worker applying the queued changes (``changes.tasks.apply_change``: the
  record's steps, then the VM row refreshed);
- ``beat``: what django-celery-beat's DatabaseScheduler writes each tick (``ModelEntry.save``
  of the rows it ran) and what an admin's edit of a row writes (``PeriodicTasks.changed``).

A role prints ``ready`` once Django is set up and its connection open, waits for a line on
stdin (so that all roles start writing at the same moment), writes for SECONDS, then prints
one JSON line: ``{"role", "ops", "errors", "spans", "changes"}``; ``spans`` are the
(start, end) of every write, ``errors`` the ``repr`` of every exception and how long its write
took (the loop goes on).

``--legacy`` opens the connection with Django's own SQLite defaults instead of the portal's
(DEFERRED transactions, 5 s busy timeout, no PRAGMAs: a file made by a legacy ``setup`` keeps
SQLite's rollback journal): the negative test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "numaportal.settings")
django.setup()  # before the models are imported; no connection is opened yet

# ruff: noqa: E402 - these need the apps loaded
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection, transaction
from django_celery_beat.models import PeriodicTask, PeriodicTasks
from django_celery_beat.schedulers import ModelEntry

from changes import tasks
from changes.models import Change
from changes.requests import request_change
from hosts.models import Host
from numaportal.celery import app
from numaportal.roles import OPERATOR_GROUP
from vms import requests, sampling, sync
from vms.models import VirtualMachine

#: Django's SQLite behaviour without OPTIONS: what the portal ran with before.
LEGACY_OPTIONS: dict[str, object] = {"timeout": 5.0}
OPERATOR = "op"
HOST = "lab"
#: A change the test driver's domain "test" accepts (its vcpupin takes no live/config flags).
CHANGE = {"kind": "emulatorpin", "params": {"cpuset": "0"}, "scope": "live"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("seconds", type=float, nargs="?", default=0.0)
    parser.add_argument("--legacy", action="store_true")
    parser.add_argument("--queue", default="", help="the host's worker_queue (setup)")
    args = parser.parse_args()
    if args.legacy:
        connection.settings_dict["OPTIONS"] = dict(LEGACY_OPTIONS)
    connection.ensure_connection()
    ROLES[args.role](args)


# --- roles ----------------------------------------------------------------------------------


def setup(args: argparse.Namespace) -> None:
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(OPERATOR, password="op-password-123")
    user.groups.add(Group.objects.get(name=OPERATOR_GROUP))
    host = requests.register_host(
        name=HOST, uri="test:///default", worker_queue=args.queue, queue_first_sync=False
    )
    host = sync.sync_host(host.pk)
    assert host.sync_status == "ok", host.last_error
    print(json.dumps({"host": host.pk, "vms": host.vms.count()}), flush=True)


def web(args: argparse.Namespace) -> None:
    user = get_user_model().objects.get(username=OPERATOR)
    created: list[str] = []

    def one() -> None:
        vm = VirtualMachine.objects.select_related("host").get(host__name=HOST, name="test")
        with transaction.atomic():  # as web.vms.views._request_changes does
            change = request_change(actor=user, target=vm, reason="concurrency test", **CHANGE)
        created.append(str(change.id))

    run(args, one, extra={"changes": created})


def sync_role(args: argparse.Namespace) -> None:
    host_id = Host.objects.get(name=HOST).pk
    turn = [0]

    def one() -> None:
        turn[0] += 1
        if turn[0] % 2:
            host = sync.sync_host(host_id)
            if host.sync_status != Host.SyncStatus.OK:
                raise RuntimeError(f"sync failed: {host.last_error}")
        else:
            result = sampling.sample_host(host_id, probe=False)
            if result.error and "newer sample" not in result.error:
                raise RuntimeError(f"sample failed: {result.error}")

    run(args, one)


def worker(args: argparse.Namespace) -> None:
    def one() -> None:
        queued = Change.objects.filter(status=Change.Status.QUEUED).order_by("created_at")
        change_id = queued.values_list("id", flat=True).first()
        if change_id is None:
            time.sleep(0.01)  # nothing requested yet: not a write, not counted below
            raise _Idle
        tasks.apply_change(str(change_id))

    run(args, one)


def beat(args: argparse.Namespace) -> None:
    def one() -> None:
        for task in PeriodicTask.objects.enabled():
            next(ModelEntry(task, app=app)).save()  # DatabaseScheduler.sync, entry by entry
        PeriodicTasks.update_changed()

    run(args, one)


ROLES: dict[str, Callable[[argparse.Namespace], None]] = {
    "setup": setup,
    "web": web,
    "sync": sync_role,
    "worker": worker,
    "beat": beat,
}


# --- the loop -------------------------------------------------------------------------------


class _Idle(Exception):
    """Nothing to do this round (the executor found no queued change)."""


def run(args: argparse.Namespace, one: Callable[[], None], extra: dict | None = None) -> None:
    """Wait for the start line, call *one* for ``args.seconds``, print the report."""
    print("ready", flush=True)
    sys.stdin.readline()
    ops, errors, spans = 0, [], []
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        start = time.time()
        try:
            one()
        except _Idle:
            continue
        except Exception as exc:
            errors.append(f"{exc!r} after {time.time() - start:.3f} s")
            traceback.print_exc()
        ops += 1
        spans.append((start, time.time()))
    report = {"role": args.role, "ops": ops, "errors": errors, "spans": spans, **(extra or {})}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
