"""``manage.py register_host NAME URI``: what the registration form does (validated the same
way, saved "checking the connection", its connection test and first sync queued for a
worker). Nothing here contacts the host; follow it with ``sync_host NAME --wait``."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from hosts.forms import HostRegisterForm
from vms import requests
from vms.management.errors import refusal


class Command(BaseCommand):
    help = (
        "Register a host as the portal's form does: validated, saved 'checking the "
        "connection', its connection test and first sync queued for a worker."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="short name, e.g. hv01")
        parser.add_argument("uri", help="libvirt URI, e.g. qemu+ssh://root@hv01/system")
        parser.add_argument(
            "--worker-queue",
            default="",
            help="the host's on-host worker queue (numastat, numa_balancing); blank: none",
        )
        parser.add_argument(
            "--disabled", action="store_true", help="registered but not synced periodically"
        )

    def handle(self, *args: object, **options: object) -> None:
        name, uri = str(options["name"]), str(options["uri"])
        what = f"Not registering host {name!r} at {uri}"
        # The form's field rules and words (slug name, lengths), then the service's.
        form = HostRegisterForm(
            {
                "name": name,
                "uri": uri,
                "enabled": not options["disabled"],
                "worker_queue": options["worker_queue"],
            }
        )
        if not form.is_valid():
            raise refusal(ValidationError(form.errors.as_data()), what)
        try:
            host = requests.register_from_form(form.cleaned_data)
        except ValidationError as exc:
            raise refusal(exc, what) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered host {host.name!r} at {host.uri} ({host.get_sync_status_display()}"
                f"{'' if host.enabled else ', disabled'}): a worker tests the connection, then "
                f"syncs it. Follow it with: manage.py sync_host {host.name} --wait 60"
            )
        )
