"""Service functions for hosts: registration, removal, what a host says about itself, its
stored topology, and the host half of a sync (facts, cells, physical CPUs).

A whole sync (host + its VMs, one transaction) is :func:`vms.sync.sync_host`: it needs the VM
rows, which live a layer above this app. Registering through the portal is
:func:`vms.requests.register_host`: validate and save the host here ("checking the
connection"), then queue its connection test and first sync (:func:`vms.sync.check_and_sync`).
A registration never contacts the host in the request: the test runs on a worker, in a child
process that is killed when the host does not answer in time
(:mod:`numaportal.virt.connection_check`).
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from hosts.models import FACT_FIELDS, Cell, Host, PhysicalCpu
from numaportal import roles
from numaportal.virt import connection as virt_connection
from numaportal.virt import hostfacts
from numaportal.virt.connection_check import ConnectionAnswer, check_connection
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
    "add_starting_host",
    "describe_host",
    "load_topology",
    "record_check_answer",
    "record_check_failure",
    "record_sync_error",
    "remove_host",
    "run_connection_test",
    "store_host_facts",
    "validate_registration",
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


def validate_registration(*, name: str, uri: str, exclude_pk: int | None = None) -> str:
    """Validate a host to register (or a changed URI); the normalised URI. No libvirt call.

    Raises :class:`django.core.exceptions.ValidationError` keyed by field ("name", "uri") for
    a bad or duplicate name and a URI another active host already uses, and
    :class:`~numaportal.virt.errors.InvalidURI` for a URI the allow-list refuses. Forms show
    ``str(exc)`` next to the URI field. *exclude_pk*: the host being edited. Whether the host
    answers is the connection test's business (:func:`run_connection_test`, on a worker).
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
    return normalised


def run_connection_test(uri: str) -> ConnectionAnswer:
    """Open *uri* once in a child process and read what the host says; libvirt's VirtError
    (its own words) propagates, "timed out after …" when the child was killed. For workers:
    it waits up to NUMAPORTAL_LIBVIRT_TIMEOUT."""
    return check_connection(uri, timeout=settings.NUMAPORTAL_LIBVIRT_TIMEOUT)


def record_check_answer(host: Host, uri: str, answer: ConnectionAnswer) -> bool:
    """The connection test of *uri* passed: keep libvirt's answer; the caller syncs next.

    False (nothing written) when the host was forgotten or its URI changed while the test ran:
    this answer is not about it any more. The same holds for :func:`record_check_failure`.
    """
    when = timezone.localtime().strftime("%Y-%m-%d %H:%M:%S")
    host.check_answer = f"{when}: {answer.describe()}"
    host.last_error = ""
    rows = Host.objects.filter(pk=host.pk, uri=uri)
    return bool(rows.update(check_answer=host.check_answer, last_error=""))


def record_check_failure(host: Host, uri: str, message: str) -> bool:
    """The connection test of *uri* failed: status "connection test failed", libvirt's words
    kept; False when the host is gone or has another URI now."""
    host.sync_status = Host.SyncStatus.CHECK_FAILED
    host.last_error = message or "unknown error"
    host.last_sync_at = timezone.now()
    when = timezone.localtime(host.last_sync_at).strftime("%Y-%m-%d %H:%M:%S")
    host.check_answer = f"{when}: no answer"
    return bool(
        Host.objects.filter(pk=host.pk, uri=uri).update(
            sync_status=host.sync_status,
            last_error=host.last_error,
            last_sync_at=host.last_sync_at,
            check_answer=host.check_answer,
        )
    )


def add_starting_host(*, name: str, uri: str, worker_queue: str = "") -> Host:
    """Register a host that is still booting ("host starting"), without trying its URI: the
    connection is tried by its first sync once it is up. Name and URI are checked as in
    :func:`validate_registration`; an existing row of that name is returned as it is."""
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


def add_host(
    *,
    name: str,
    uri: str,
    enabled: bool = True,
    worker_queue: str = "",
    checking: bool = True,
) -> Host:
    """Validate and save, status "checking the connection"; the caller queues the test.

    No libvirt call. Errors: see :func:`validate_registration`. *checking* False saves it as
    "never synced", for callers that sync it in-process right away.
    """
    normalised = validate_registration(name=name, uri=uri)
    status = Host.SyncStatus.CHECKING if checking else Host.SyncStatus.NEVER
    try:
        with transaction.atomic():
            host = Host.objects.create(
                name=name,
                uri=normalised,
                enabled=enabled,
                worker_queue=worker_queue,
                sync_status=status,
            )
    except IntegrityError:
        # Another request registered the same name between our check and the insert.
        raise ValidationError({"name": [f"A host called {name!r} exists already."]}) from None
    log.info("registered host %s (%s)", host.name, host.uri)
    return host


def remove_host(host: Host, *, actor: Any = None) -> bool:
    """Remove a host from the portal; True if it was forgotten entirely. *actor* (a user;
    None: the portal itself) needs ``hosts.delete_host`` (PermissionDenied otherwise).

    A host that never connected (its registration's connection test failed or is still
    running, and it never synced) has nothing to keep: its row goes, and so its name can be
    registered again with a corrected URI. Any other host is removed softly: it stops being
    synced and listed; its VMs and history stay, and its name stays taken.
    """
    roles.require(actor, roles.DELETE_HOST, "remove hosts")
    if host.registration_pending:
        try:
            with transaction.atomic():
                host.delete()
        except ProtectedError:  # something refers to it after all: keep it, softly removed
            pass
        else:
            log.info("forgot host %s: it never connected", host.name)
            return True
    host.removed_at = timezone.now()
    host.enabled = False
    host.save(update_fields=["removed_at", "enabled"])
    log.info("removed host %s", host.name)
    return False


def record_sync_error(host: Host, message: str) -> None:
    """A failed sync: status "error" with libvirt's message; the stored inventory stays."""
    host.sync_status = Host.SyncStatus.ERROR
    host.last_error = message or "unknown error"
    host.last_sync_at = timezone.now()
    host.save(update_fields=["sync_status", "last_error", "last_sync_at"])


def load_topology(host: Host) -> HostTopology | None:
    """The host's topology rebuilt from its stored capabilities XML; None if never synced.

    Parsed once per process for each distinct XML document (a frozen HostTopology, safe to
    share): the scheduler's sweep reads every host's topology, and a sync that changed the
    host stores another document, parsed afresh."""
    if not host.capabilities_xml:
        return None
    try:
        return _parse_stored_capabilities(host.capabilities_xml)
    except TopologyError:
        log.warning("stored capabilities of host %s no longer parse", host.name)
        return None


@functools.lru_cache(maxsize=1024)
def _parse_stored_capabilities(xml: str) -> HostTopology:
    return parse_capabilities(xml)


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
