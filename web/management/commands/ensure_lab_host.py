"""Register the lab as host "lab" (once) and sync it in-process, so the first page shows it."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from balancing.models import BalancingPolicy
from hosts.models import Host
from numaportal.virt import connection as virt_connection
from numaportal.virt.errors import VirtError
from numaportal.virt.hostfacts import host_info
from numaportal.virt.uri import validate_uri
from vms import requests, sync

LAB_HOST = "lab"
#: The Procfile's `hostworker` consumes this queue with NUMAPORTAL_ON_HOST=lab: the lab daemon
#: runs on this machine, so a worker here *is* an on-host worker for it.
LAB_QUEUE = f"host.{LAB_HOST}"
#: vCPUs per CPU the lab's balancing policy starts with (6 vCPUs on 2 CPUs, room for more).
LAB_OVERCOMMIT = 4.0
# Short: `make run` waits for this, and the lab daemon is local (it answers in milliseconds).
PROBE_TIMEOUT = 5.0


def _answers(uri: str) -> str | None:
    """None if *uri* answers, else libvirt's reason."""
    try:
        with virt_connection.connect(uri, timeout=PROBE_TIMEOUT, readonly=True) as conn:
            host_info(conn)
    except VirtError as exc:
        return str(exc)
    return None


def _ensure_lab_policy(host: Host) -> None:
    """The lab runs three 2-vCPU VMs on two CPUs: without over-commit no plan fits at all.
    A first run gets a policy (mode off) that allows it; an operator's policy stays."""
    BalancingPolicy.objects.get_or_create(host=host, defaults={"cpu_overcommit": LAB_OVERCOMMIT})


def _is_local(uri: str) -> bool:
    """qemu:///system and friends: a daemon on this machine (no host part in the URI)."""
    return "://" in uri and uri.split("://", 1)[1].startswith("/")


class Command(BaseCommand):
    help = (
        f"Register host '{LAB_HOST}' with NUMAPORTAL_LAB_URI when that daemon answers, else with "
        "libvirt's built-in test:///default, and sync it right away (no worker needed). "
        "Idempotent; a removed 'lab' host stays removed."
    )

    def handle(self, *args: object, **options: object) -> None:
        lab_uri = validate_uri(settings.NUMAPORTAL_LAB_URI)
        fallback = settings.NUMAPORTAL_FALLBACK_URI
        reason = _answers(lab_uri)
        if reason is None:
            uri, why = lab_uri, f"the lab daemon answers on {lab_uri}"
            queue = LAB_QUEUE if _is_local(lab_uri) else ""
        else:
            # The test driver has no /sys of its own: this machine's numastat is not its.
            queue = ""
            uri = fallback
            why = (
                f"{lab_uri} does not answer ({reason}); using libvirt's in-process test driver "
                f"{fallback} (2 NUMA cells x 8 CPUs, one domain) so the portal has a host to show"
            )

        host = Host.objects.filter(name=LAB_HOST).first()
        if host is not None and host.is_removed:
            self.stdout.write(f"Host '{LAB_HOST}' was removed by an operator; leaving it removed.")
            return
        if host is None:
            try:
                host = requests.register_host(
                    name=LAB_HOST, uri=uri, worker_queue=queue, queue_first_sync=False
                )
            except (VirtError, ValidationError) as exc:
                # Not fatal: `make run` goes on and the portal simply starts without a lab host.
                messages = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
                self.stderr.write(
                    f"Not registering host '{LAB_HOST}' at {uri}: {' '.join(messages)}"
                )
                return
            self.stdout.write(f"Registered host '{LAB_HOST}' at {uri}: {why}.")
        elif host.uri != uri and host.uri in {lab_uri, fallback}:
            # Only switch between the two URIs this command chooses itself: a URI an operator
            # set by hand is theirs.
            host.uri = uri
            host.worker_queue = queue
            host.save(update_fields=["uri", "worker_queue"])
            self.stdout.write(f"Host '{LAB_HOST}' now uses {uri}: {why}.")
        elif host.uri == uri and queue and not host.worker_queue:
            # A lab host registered before on-host workers existed gets the Procfile's one.
            host.worker_queue = queue
            host.save(update_fields=["worker_queue"])
            self.stdout.write(f"Host '{LAB_HOST}' ({host.uri}) now samples on queue {queue}.")
        else:
            self.stdout.write(f"Host '{LAB_HOST}' exists ({host.uri}).")

        _ensure_lab_policy(host)
        host = sync.sync_host(host.pk)
        if host.sync_status == Host.SyncStatus.OK:
            vms = host.vms.filter(gone_at__isnull=True).count()
            self.stdout.write(
                self.style.SUCCESS(
                    f"Synced host '{LAB_HOST}': {vms} VMs, {host.cpus.count()} CPUs."
                )
            )
        else:
            self.stderr.write(f"Sync of host '{LAB_HOST}' failed: {host.last_error}")
