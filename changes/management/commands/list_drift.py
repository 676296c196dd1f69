"""``manage.py list_drift [--host H] [--check]``: the drift the pages show, as stored (the sync
and :func:`changes.drift.check_drift` keep it; nothing here asks a host): VMs whose live tuning
differs from their persistent configuration ("live-only: lost at next shutdown"), and VMs
changed outside the portal since its last change."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from hosts.models import Host
from vms.models import VirtualMachine


class Command(BaseCommand):
    help = (
        "List VMs with drift (live-only tuning, or changed outside the portal), as the pages "
        "show it; --check exits 1 when there is any (for CI)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", help="only this host")
        parser.add_argument("--check", action="store_true", help="exit status 1 if any drift")

    def handle(self, *args: object, **options: object) -> None:
        vms = VirtualMachine.objects.present().filter(
            Q(drift=True) | Q(changed_outside=True),
            host__enabled=True,
            host__removed_at__isnull=True,
        )
        if options["host"]:
            host = Host.objects.active().filter(name=options["host"]).first()
            if host is None:
                raise CommandError(f"No host {options['host']!r} in the portal.")
            vms = vms.filter(host=host)
        count = 0
        for vm in vms.select_related("host").order_by("host__name", "name"):
            count += 1
            self.stdout.write(f"{vm.host.name} {vm.name} {vm.uuid}")
            if vm.drift:
                self.stdout.write("  live-only: lost at next shutdown")
                for line in vm.drift_detail.splitlines():
                    self.stdout.write(f"    {line}")
            if vm.changed_outside:
                self.stdout.write("  changed outside the portal")
                for line in vm.changed_outside_detail.splitlines():
                    self.stdout.write(f"    {line}")
        where = f" on {options['host']}" if options["host"] else ""
        self.stdout.write(f"{count} VM{'s' if count != 1 else ''} with drift{where}.")
        if count and options["check"]:
            raise CommandError(f"drift on {count} VM{'s' if count != 1 else ''}")
