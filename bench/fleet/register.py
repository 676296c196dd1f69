"""Register a simulated fleet with the portal: one command for 500 hosts.

    NUMAPORTAL_SIMULATED_HOSTS_DIR=$PWD/.run/fleet \\
        .venv/bin/python -m bench.fleet register --hosts 500 --vms 40

writes the host files (:mod:`bench.fleet.generate`) into the simulated hosts' directory and
registers each host through the portal's own service (:func:`vms.requests.register_host`: the
same validation as the form, the URI allow-list included). With ``--check`` every host's
connection test and first sync are queued, as a registration from the page does (workers
must run with the same NUMAPORTAL_SIMULATED_HOSTS_DIR); without it the hosts are stored
"never synced" and the next periodic sync, or the fleet benchmark, syncs them.

Uses the database of DATABASE_URL (the settings' default otherwise). Hosts already registered
under a simulated name are left as they are, so the command can be run again.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench.fleet.generate import write_fleet

__all__ = ["main", "register_fleet"]


def register_fleet(directory: Path, hosts: int, vms: int, *, check: bool = False) -> int:
    """Write and register the fleet; how many hosts were registered now (Django set up)."""
    from django.db import transaction

    from hosts.models import Host
    from vms.requests import register_host

    written = write_fleet(directory, hosts, vms)
    existing = set(Host.objects.filter(name__in=[h.name for h in written]).values_list("name"))
    existing = {name for (name,) in existing}
    registered = 0
    for host in written:
        if host.name in existing:
            continue
        with transaction.atomic():
            register_host(name=host.name, uri=f"test://{host.path}", queue_first_sync=check)
        registered += 1
    return registered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet register")
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--vms", type=int, default=40, help="domains per host")
    parser.add_argument(
        "--check", action="store_true", help="queue each host's connection test and first sync"
    )
    args = parser.parse_args(argv)
    directory = os.environ.get("NUMAPORTAL_SIMULATED_HOSTS_DIR")
    if not directory:
        print(
            "NUMAPORTAL_SIMULATED_HOSTS_DIR must name the directory for the host files "
            "(the workers need the same value to open them)",
            file=sys.stderr,
        )
        return 2
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "numaportal.settings")
    django.setup()
    start = time.perf_counter()
    count = register_fleet(Path(directory), args.hosts, args.vms, check=args.check)
    print(
        f"registered {count} simulated host(s) of {args.vms} domains in "
        f"{time.perf_counter() - start:.1f} s ({args.hosts - count} were registered already)"
    )
    return 0
