"""``manage.py request_change --host H --vm UUID_OR_NAME --kind K --params JSON --scope S
--reason R --user U [--wait SECONDS]``: one change of a VM through
:func:`changes.requests.request_change` — the forms' and the API's service, with its role
check (the user needs the operator role), validation and words; recorded "queued" and applied
by a worker. With ``--wait``, follow the record until it ends."""

from __future__ import annotations

import json
import time
import uuid

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from changes.models import Change
from changes.requests import request_change
from hosts.models import Host
from vms.management.errors import refusal
from vms.models import VirtualMachine

POLL_S = 0.5


def _vm(host: Host, wanted: str) -> VirtualMachine:
    vms = VirtualMachine.objects.present().filter(host=host)
    try:
        match = vms.filter(uuid=uuid.UUID(wanted))
    except ValueError:
        match = vms.filter(name=wanted)
    found = list(match[:2])
    if not found:
        raise CommandError(f"No VM {wanted!r} on host {host.name!r} (as of its last sync).")
    if len(found) > 1:
        raise CommandError(f"More than one VM named {wanted!r} on {host.name!r}: give its UUID.")
    return found[0]


class Command(BaseCommand):
    help = (
        "Request one change of a VM (as the VM's change forms and POST /api/v1/changes/ do) "
        "as USER; --wait SECONDS follows it and fails unless it succeeds."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", required=True, help="the host's name in the portal")
        parser.add_argument("--vm", required=True, help="the VM's UUID or name on that host")
        parser.add_argument("--kind", required=True, help="e.g. vcpupin, emulatorpin, numatune")
        parser.add_argument(
            "--params", required=True, help='the kind\'s parameters as JSON: {"vcpu": 0, ...}'
        )
        parser.add_argument(
            "--scope", default="live+config", help="live, config or live+config (the default)"
        )
        parser.add_argument("--reason", required=True, help="why (kept in the change history)")
        parser.add_argument("--user", required=True, help="who asks (needs the operator role)")
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="wait up to SECONDS for the change to end (0: do not wait)",
        )

    def handle(self, *args: object, **options: object) -> None:
        username = str(options["user"])
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        host = Host.objects.active().filter(name=str(options["host"])).first()
        if host is None:
            raise CommandError(f"No host {options['host']!r} in the portal.")
        vm = _vm(host, str(options["vm"]))
        try:
            params = json.loads(str(options["params"]))
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not JSON: {exc}") from None
        if not isinstance(params, dict):
            raise CommandError('--params must be a JSON object, e.g. {"vcpu": 0, "cpuset": "1"}')
        what = f"Change of {vm.name} on {host.name} refused"
        try:
            change = request_change(
                actor=user,
                target=vm,
                kind=str(options["kind"]),
                params=params,
                scope=str(options["scope"]),
                reason=str(options["reason"]),
            )
        except (ValidationError, PermissionDenied) as exc:
            raise refusal(exc, what) from None
        self.stdout.write(
            f"Change {change.id}: {change.kind} {json.dumps(change.params, sort_keys=True)} "
            f"of {vm.name} ({change.scope}), {change.status}."
        )
        wait = float(options["wait"] or 0)
        if wait <= 0:
            return
        deadline = time.monotonic() + wait
        while change.status in Change.ACTIVE_STATUSES and time.monotonic() < deadline:
            time.sleep(POLL_S)
            change.refresh_from_db()
        if change.status in Change.ACTIVE_STATUSES:
            raise CommandError(
                f"Change {change.id} still {change.status} after {wait:g} s: is a worker "
                "running on the portal's central queue?"
            )
        if change.status != Change.Status.SUCCEEDED:
            raise CommandError(f"Change {change.id} {change.status}: {change.error}")
        self.stdout.write(self.style.SUCCESS(f"Change {change.id} succeeded."))
