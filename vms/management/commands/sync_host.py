"""``manage.py sync_host NAME [--wait SECONDS]``: the host page's "Sync now" (a host that never
passed its connection test is tested again), queued for a worker; with ``--wait``, follow the
host's sync status until the sync ends."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from hosts.models import Host
from vms import requests

#: A sync (or the connection test before it) is still under way.
PENDING = frozenset(
    {
        Host.SyncStatus.STARTING,
        Host.SyncStatus.CHECKING,
        Host.SyncStatus.QUEUED,
        Host.SyncStatus.RUNNING,
    }
)
POLL_S = 0.5


class Command(BaseCommand):
    help = (
        "Queue a sync of a host for a worker (as 'Sync now' does); --wait SECONDS follows it "
        "and fails unless it ends in sync."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the host's name in the portal")
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="wait up to SECONDS for the sync to end (0: do not wait)",
        )

    def handle(self, *args: object, **options: object) -> None:
        name = str(options["name"])
        host = Host.objects.active().filter(name=name).first()
        if host is None:
            raise CommandError(f"No host {name!r} in the portal (removed hosts are not synced).")
        requests.request_sync(host)
        host.refresh_from_db()
        self.stdout.write(f"Host {host.name!r}: {host.get_sync_status_display()}.")
        wait = float(options["wait"] or 0)
        if wait <= 0:
            return
        deadline = time.monotonic() + wait
        while host.sync_status in PENDING and time.monotonic() < deadline:
            time.sleep(POLL_S)
            host.refresh_from_db()
        if host.sync_status in PENDING:
            raise CommandError(
                f"Host {host.name!r} still {host.get_sync_status_display()!r} after {wait:g} s: "
                "is a worker running on the portal's central queue?"
            )
        if host.sync_status != Host.SyncStatus.OK:
            raise CommandError(
                f"Host {host.name!r}: {host.get_sync_status_display()}: {host.last_error}"
            )
        vms = host.vms.filter(gone_at__isnull=True).count()
        self.stdout.write(
            self.style.SUCCESS(
                f"Host {host.name!r} in sync: {vms} VMs, {host.cpus.count()} CPUs ({host.uri})."
            )
        )
