"""Service functions for hosts: registration, removal, what a host says about itself, its
stored topology, and the host half of a sync (facts, cells, physical CPUs).

A whole sync (host + its VMs, one transaction) is :func:`vms.sync.sync_host`: it needs the VM
rows, which live a layer above this app. Registering through the portal is
:func:`vms.sync.register_host` (add the host here, then queue its first sync).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from hosts.models import FACT_FIELDS, Cell, Host, PhysicalCpu
from numaportal.virt import connection as virt_connection
from numaportal.virt import hostfacts
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.domain import DomainXMLError
from numaportal.virt.domains import list_domains
from numaportal.virt.errors import VirtError
from numaportal.virt.inventory import HostInventory
from numaportal.virt.topology import HostTopology, TopologyError, parse_capabilities
from numaportal.virt.uri import validate_uri

__all__ = [
    "SYNC_ERRORS",
    "add_host",
    "check_registration",
    "describe_host",
    "load_topology",
    "record_sync_error",
    "remove_host",
    "store_host_facts",
]

log = logging.getLogger(__name__)

#: What a sync records as the host's error instead of raising: libvirt and parse failures.
SYNC_ERRORS = (VirtError, TopologyError, DomainXMLError)


def describe_host(uri: str, *, timeout: float | None = None) -> dict[str, str]:
    """What `virsh version`, `virsh nodeinfo` and `virsh list --all` say about one host.

    *timeout*: seconds to wait for the connection (default NUMAPORTAL_LIBVIRT_TIMEOUT).
    """
    if timeout is None:
        timeout = settings.NUMAPORTAL_LIBVIRT_TIMEOUT
    with virt_connection.connect(uri, timeout=timeout, readonly=True) as conn:
        info = hostfacts.host_info(conn)
        domains = list_domains(conn)
    version = hostfacts.format_version
    running = sum(1 for d in domains if d.active)
    return {
        "URI": uri,
        "Host": info.hostname,
        "Hypervisor": f"{info.hypervisor_type} {version(info.hypervisor_version)}",
        "libvirt": version(info.libvirt_version),
        "Host CPUs": str(info.cpu_count),
        "NUMA cells": str(len(info.cells_free_memory_kib)),
        "Lab VMs": ", ".join(d.name for d in domains if d.name.startswith("numalab-")) or "none",
        "Domains": f"{len(domains)} ({running} running)",
    }


# --- registration and removal ---------------------------------------------------------------


def _try_connection(uri: str) -> hostfacts.HostInfo:
    """Open *uri* once and read its facts; the VirtError (libvirt's words) propagates."""
    with virt_connection.connect(
        uri, timeout=settings.NUMAPORTAL_LIBVIRT_TIMEOUT, readonly=True
    ) as conn:
        return hostfacts.host_info(conn)


def check_registration(*, name: str, uri: str, exclude_pk: int | None = None) -> str:
    """Validate a host to register (or a changed URI) and try to reach it; the normalised URI.

    Raises :class:`django.core.exceptions.ValidationError` keyed by field ("name", "uri") for
    a bad or duplicate name and a URI another active host already uses, and the
    :class:`~numaportal.virt.errors.VirtError` of the attempt otherwise: ``InvalidURI`` for a
    refused URI, ``HostUnreachable`` etc. with libvirt's message for one that does not answer.
    Forms show ``str(exc)`` next to the URI field. *exclude_pk*: the host being edited.
    """
    errors: dict[str, list[str]] = {}
    probe = Host(name=name, uri=uri)
    try:
        probe.clean_fields(exclude=["uri", "worker_queue"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    others = Host.objects.exclude(pk=exclude_pk) if exclude_pk else Host.objects.all()
    if "name" not in errors and others.filter(name=name).exists():
        removed = others.filter(name=name, removed_at__isnull=False).exists()
        errors["name"] = [
            f"A removed host is still called {name!r} (its history is kept); choose another name."
            if removed
            else f"A host called {name!r} exists already."
        ]
    normalised = validate_uri(uri, file_dir=settings.NUMAPORTAL_URI_FILE_DIR)  # InvalidURI
    clash = others.active().filter(uri=normalised).first()
    if clash is not None:
        errors["uri"] = [f"Host {clash.name!r} already uses {normalised}."]
    if errors:
        raise ValidationError(errors)
    _try_connection(normalised)
    return normalised


def add_starting_host(*, name: str, uri: str, worker_queue: str = "") -> Host:
    """Register a host that is still booting ("host starting"), without trying its URI: the
    connection is tried by its first sync once it is up. Name and URI are checked as in
    :func:`check_registration`; an existing row of that name is returned as it is."""
    host = Host.objects.filter(name=name).first()
    if host is not None:
        return host
    errors: dict[str, list[str]] = {}
    probe = Host(name=name, uri=uri, worker_queue=worker_queue)
    try:
        probe.clean_fields(exclude=["uri"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    normalised = validate_uri(uri)
    clash = Host.objects.active().filter(uri=normalised).first()
    if clash is not None:
        errors["uri"] = [f"Host {clash.name!r} already uses {normalised}."]
    if errors:
        raise ValidationError(errors)
    host, _ = Host.objects.get_or_create(
        name=name,
        defaults={
            "uri": normalised,
            "worker_queue": worker_queue,
            "sync_status": Host.SyncStatus.STARTING,
        },
    )
    log.info("registered host %s (%s), still starting", host.name, host.uri)
    return host


def add_host(*, name: str, uri: str, enabled: bool = True, worker_queue: str = "") -> Host:
    """Validate, try the connection once and save; the caller queues the first sync.

    Errors: see :func:`check_registration` (ValidationError for name/URI clashes, the
    VirtError of the connection attempt with libvirt's message).
    """
    normalised = check_registration(name=name, uri=uri)
    try:
        with transaction.atomic():
            host = Host.objects.create(
                name=name, uri=normalised, enabled=enabled, worker_queue=worker_queue
            )
    except IntegrityError:
        # Another request registered the same name between our check and the insert.
        raise ValidationError({"name": [f"A host called {name!r} exists already."]}) from None
    log.info("registered host %s (%s)", host.name, host.uri)
    return host


def remove_host(host: Host) -> None:
    """Soft removal: the host stops being synced and listed; its VMs and history stay."""
    host.removed_at = timezone.now()
    host.enabled = False
    host.save(update_fields=["removed_at", "enabled"])
    log.info("removed host %s", host.name)


def record_sync_error(host: Host, message: str) -> None:
    """A failed sync: status "error" with libvirt's message; the stored inventory stays."""
    host.sync_status = Host.SyncStatus.ERROR
    host.last_error = message or "unknown error"
    host.last_sync_at = timezone.now()
    host.save(update_fields=["sync_status", "last_error", "last_sync_at"])


def load_topology(host: Host) -> HostTopology | None:
    """The host's topology rebuilt from its stored capabilities XML; None if never synced."""
    if not host.capabilities_xml:
        return None
    try:
        return parse_capabilities(host.capabilities_xml)
    except TopologyError:
        log.warning("stored capabilities of host %s no longer parse", host.name)
        return None


def store_host_facts(host: Host, inventory: HostInventory, now: datetime) -> None:
    """The host half of a sync: facts, cells and physical CPUs, in a constant number of queries.

    Call inside the sync's transaction (:func:`vms.sync.apply_inventory`), which has locked
    the host row. Cells and CPUs that disappeared are deleted; upserts on (host, cell) and
    (host, cpu) keep row ids stable across syncs.
    """
    info, topology = inventory.host, inventory.topology
    version = hostfacts.format_version
    host.hostname = info.hostname
    host.hypervisor = f"{info.hypervisor_type} {version(info.hypervisor_version)}"
    host.libvirt_version = version(info.libvirt_version)
    host.arch = topology.arch
    host.cpu_model = topology.cpu_model or ""
    host.cpu_vendor = topology.cpu_vendor or ""
    host.capabilities_xml = info.capabilities_xml
    host.sync_status = Host.SyncStatus.OK
    host.last_error = ""
    host.last_sync_at = host.last_sync_ok_at = now
    host.save(
        update_fields=[
            *FACT_FIELDS,
            "capabilities_xml",
            "sync_status",
            "last_error",
            "last_sync_at",
            "last_sync_ok_at",
        ]
    )

    # Topology: CPUs first (a vanished cell's CPUs go with it), then cells.
    cell_ids = sorted(topology.cell_ids)
    PhysicalCpu.objects.filter(host=host).exclude(cpu_id__in=topology.cpu_ids).delete()
    Cell.objects.filter(host=host).exclude(cell_id__in=cell_ids).delete()
    Cell.objects.bulk_create(
        [
            Cell(
                host=host,
                cell_id=cell.id,
                memory_kib=cell.memory_kib,
                free_kib=info.cells_free_memory_kib.get(cell.id),
                distances={str(k): v for k, v in sorted(cell.distances.items())},
            )
            for cell in topology.cells
        ],
        update_conflicts=True,
        unique_fields=["host", "cell_id"],
        update_fields=["memory_kib", "free_kib", "distances"],
    )
    cell_pk = dict(Cell.objects.filter(host=host).values_list("cell_id", "pk"))
    PhysicalCpu.objects.bulk_create(
        [
            PhysicalCpu(
                host=host,
                cell_id=cell_pk[cpu.cell_id],
                cpu_id=cpu.id,
                socket_id=cpu.socket_id,
                die_id=cpu.die_id,
                core_id=cpu.core_id,
                siblings=format_cpuset(cpu.siblings),
            )
            for cell in topology.cells
            for cpu in cell.cpus
        ],
        update_conflicts=True,
        unique_fields=["host", "cpu_id"],
        update_fields=["cell", "socket_id", "die_id", "core_id", "siblings"],
    )
