"""Register the NUMA lab (scripts/numa-lab) as host "numalab" and sync it, for `make run`.

`make run` boots the NUMA lab in the background (a minute on the first boot): it calls this
command with ``--starting`` first, so the host is listed as "host starting" rather than as a
failed sync, then without options once the lab answers, or with ``--failed REASON`` when it
could not start. Idempotent; a "numalab" host removed by an operator stays removed.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser

from balancing.models import BalancingPolicy
from hosts.models import Host
from hosts.services import add_starting_host
from numaportal.virt.errors import VirtError
from numaportal.virt.uri import validate_uri
from vms import requests, sync

NUMALAB_HOST = "numalab"
#: The on-host worker scripts/numa-lab starts inside the guest consumes this queue.
NUMALAB_QUEUE = f"host.{NUMALAB_HOST}"
#: 3 lab domains x 2 vCPUs on 4 CPUs: a plan needs some over-commit to fit at all.
NUMALAB_OVERCOMMIT = 2.0


class Command(BaseCommand):
    help = (
        f"Register host '{NUMALAB_HOST}' (the NUMA lab, NUMAPORTAL_NUMALAB_URI) and sync it; "
        "--starting: list it as starting while the lab boots; --failed REASON: say why it "
        "did not start."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--starting", action="store_true", help="the lab is booting")
        mode.add_argument("--failed", metavar="REASON", help="the lab could not start: why")

    def handle(self, *args: object, **options: object) -> None:
        uri = validate_uri(settings.NUMAPORTAL_NUMALAB_URI)
        host = Host.objects.filter(name=NUMALAB_HOST).first()
        if host is not None and host.is_removed:
            self.stdout.write(f"Host '{NUMALAB_HOST}' was removed by an operator; leaving it.")
            return
        if options["failed"]:
            self._failed(host, str(options["failed"]))
        elif options["starting"]:
            self._starting(host, uri)
        else:
            self._ready(host, uri)

    def _starting(self, host: Host | None, uri: str) -> None:
        if host is None:
            try:
                host = add_starting_host(name=NUMALAB_HOST, uri=uri, worker_queue=NUMALAB_QUEUE)
            except (VirtError, ValidationError) as exc:
                self.stderr.write(f"Not registering host '{NUMALAB_HOST}' at {uri}: {_words(exc)}")
                return
        elif host.sync_status != Host.SyncStatus.OK or host.last_error:
            host.sync_status, host.last_error = Host.SyncStatus.STARTING, ""
            host.save(update_fields=["sync_status", "last_error"])
        BalancingPolicy.objects.get_or_create(
            host=host, defaults={"cpu_overcommit": NUMALAB_OVERCOMMIT}
        )
        self.stdout.write(f"Host '{NUMALAB_HOST}' ({host.uri}): the NUMA lab is starting.")

    def _failed(self, host: Host | None, reason: str) -> None:
        message = f"the NUMA lab (scripts/numa-lab) did not start: {reason.strip()[:2000]}"
        if host is not None:
            host.sync_status, host.last_error = Host.SyncStatus.ERROR, message
            host.save(update_fields=["sync_status", "last_error"])
        self.stderr.write(f"Host '{NUMALAB_HOST}': {message}")

    def _ready(self, host: Host | None, uri: str) -> None:
        if host is None:
            try:
                host = requests.register_host(
                    name=NUMALAB_HOST, uri=uri, worker_queue=NUMALAB_QUEUE, queue_first_sync=False
                )
            except (VirtError, ValidationError) as exc:
                self.stderr.write(f"Not registering host '{NUMALAB_HOST}' at {uri}: {_words(exc)}")
                return
            self.stdout.write(f"Registered host '{NUMALAB_HOST}' at {uri}.")
        BalancingPolicy.objects.get_or_create(
            host=host, defaults={"cpu_overcommit": NUMALAB_OVERCOMMIT}
        )
        host = sync.sync_host(host.pk)
        if host.sync_status != Host.SyncStatus.OK:
            self.stderr.write(f"Sync of host '{NUMALAB_HOST}' failed: {host.last_error}")
            return
        cells = ", ".join(
            f"cell {cell.cell_id} ({cell.cpus.count()} CPUs)"
            if cell.cpus.exists()
            else f"cell {cell.cell_id} (memory only)"
            for cell in host.cells.order_by("cell_id")
        )
        vms = host.vms.filter(gone_at__isnull=True).count()
        self.stdout.write(self.style.SUCCESS(f"Synced host '{NUMALAB_HOST}': {vms} VMs; {cells}."))


def _words(exc: Exception) -> str:
    return " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
