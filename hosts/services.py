"""Service functions for hosts: views and tasks stay thin and call these.

Registration, sync and removal of hypervisor hosts. A sync reads the host with
:func:`numaportal.virt.inventory.read_inventory` (cost per host and per domain: see that
module) and writes everything in one transaction with a constant number of queries, whatever
the number of VMs (:func:`apply_inventory`).
"""

from __future__ import annotations

import logging
import uuid as uuid_module
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from hosts.models import Cell, Host, PhysicalCpu
from numaportal.virt import connection as virt_connection
from numaportal.virt import hostfacts
from numaportal.virt.cpuset import format_cpuset, format_nodeset
from numaportal.virt.domain import DomainXMLError, tuning_dict
from numaportal.virt.domains import list_domains
from numaportal.virt.errors import VirtError
from numaportal.virt.inventory import DomainInventory, HostInventory, read_inventory
from numaportal.virt.topology import HostTopology, TopologyError, parse_capabilities
from numaportal.virt.uri import validate_uri
from vms import numa
from vms.models import VcpuPin, VirtualMachine

__all__ = [
    "apply_inventory",
    "check_registration",
    "describe_host",
    "load_topology",
    "register_host",
    "remove_host",
    "request_sync",
    "sync_enabled_hosts",
    "sync_host",
]

log = logging.getLogger(__name__)

#: What a sync records as the host's error instead of raising: libvirt and parse failures.
SYNC_ERRORS = (VirtError, TopologyError, DomainXMLError)


def describe_host(uri: str) -> dict[str, str]:
    """What `virsh version`, `virsh nodeinfo` and `virsh list --all` say about one host."""
    with virt_connection.connect(
        uri, timeout=settings.NUMAPORTAL_LIBVIRT_TIMEOUT, readonly=True
    ) as conn:
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
    normalised = validate_uri(uri)  # InvalidURI: the form shows why
    clash = others.active().filter(uri=normalised).first()
    if clash is not None:
        errors["uri"] = [f"Host {clash.name!r} already uses {normalised}."]
    if errors:
        raise ValidationError(errors)
    _try_connection(normalised)
    return normalised


def register_host(
    *,
    name: str,
    uri: str,
    enabled: bool = True,
    worker_queue: str = "",
    queue_first_sync: bool = True,
) -> Host:
    """Validate, try the connection once, save, and queue the first sync when committed.

    Errors: see :func:`check_registration` (ValidationError for name/URI clashes, the
    VirtError of the connection attempt with libvirt's message). *queue_first_sync* False is
    for callers that sync in-process right away (``manage.py ensure_lab_host``).
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
    if queue_first_sync:
        request_sync(host)
    return host


def remove_host(host: Host) -> None:
    """Soft removal: the host stops being synced and listed; its VMs and history stay."""
    host.removed_at = timezone.now()
    host.enabled = False
    host.save(update_fields=["removed_at", "enabled"])
    log.info("removed host %s", host.name)


# --- queueing -------------------------------------------------------------------------------


def _enqueue_sync(host_id: int, task_id: str, queue: str) -> None:
    from hosts import tasks  # tasks imports services: import here, not at module level

    options: dict[str, Any] = {"args": [host_id], "task_id": task_id}
    if queue:
        options["queue"] = queue
    try:
        tasks.sync_host.apply_async(**options)
    except Exception as exc:  # broker down: say so on the host instead of "queued" forever
        log.exception("could not queue the sync of host %s", host_id)
        Host.objects.filter(pk=host_id, sync_task_id=task_id).update(
            sync_status=Host.SyncStatus.ERROR,
            last_error=f"could not queue the sync: {exc}",
            last_sync_at=timezone.now(),
        )


def request_sync(host: Host) -> None:
    """Mark the host "sync queued" and enqueue ``hosts.tasks.sync_host`` once committed.

    The task id is generated here and stored on the host (``sync_task_id``) so a page can
    follow it; the task goes to ``host.worker_queue`` when the host has its own worker.
    """
    task_id = str(uuid_module.uuid4())
    host.sync_status = Host.SyncStatus.QUEUED
    host.sync_task_id = task_id
    host.save(update_fields=["sync_status", "sync_task_id"])
    host_id, queue = host.pk, host.worker_queue
    transaction.on_commit(lambda: _enqueue_sync(host_id, task_id, queue))


def sync_enabled_hosts() -> int:
    """Queue a sync of every enabled host that has not been removed; how many were queued.

    Queueing never contacts a host, so one broken host cannot stop the others; each sync then
    records its own success or error.
    """
    count = 0
    for host in Host.objects.active().filter(enabled=True):
        try:
            request_sync(host)
        except Exception:
            log.exception("could not queue the sync of host %s", host.name)
            continue
        count += 1
    return count


# --- sync -----------------------------------------------------------------------------------


def sync_host(host_id: int) -> Host:
    """Read the host over libvirt and store its inventory; record success or libvirt's error.

    Errors of the host (unreachable, refused, unparseable capabilities or domain XML) are
    recorded on it (status "error", ``last_error`` = libvirt's message) and not raised: the
    previously stored inventory stays as it was. Anything else (a bug, the database) is
    recorded too and then raised.
    """
    host = Host.objects.get(pk=host_id)
    if host.is_removed:
        log.info("not syncing removed host %s", host.name)
        return host
    Host.objects.filter(pk=host.pk).update(sync_status=Host.SyncStatus.RUNNING)
    host.sync_status = Host.SyncStatus.RUNNING
    try:
        with virt_connection.connect(
            host.uri, timeout=settings.NUMAPORTAL_LIBVIRT_TIMEOUT, readonly=True
        ) as conn:
            inventory = read_inventory(conn)
        apply_inventory(host, inventory)
    except SYNC_ERRORS as exc:
        log.warning("sync of host %s failed: %s", host.name, exc)
        _record_error(host, str(exc))
        return host
    except Exception as exc:
        _record_error(host, f"internal error: {exc}")
        raise
    log.info("synced host %s: %d domains", host.name, len(inventory.domains))
    return host


def _record_error(host: Host, message: str) -> None:
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


def _fmt(cpus: frozenset[int] | None) -> str:
    return format_cpuset(cpus) if cpus else ""


def _vm_fields(dom: DomainInventory, topology: HostTopology) -> dict[str, Any]:
    """Column values of one VM (everything but host/uuid and the sync timestamps)."""
    config, live, effective = dom.config, dom.live, dom.effective
    online = [
        vcpu
        for vcpu in range(effective.vcpu_max)
        if effective.vcpus_enabled.get(vcpu, vcpu < effective.vcpu_current)
    ]
    if dom.vcpu_info:
        affinity: dict[int, frozenset[int] | None] = {v.vcpu: v.affinity for v in dom.vcpu_info}
    else:
        affinity = {vcpu: effective.effective_vcpu_affinity(vcpu) for vcpu in online}
    cells = numa.vm_cells(topology, affinity)
    drift = numa.tuning_drift(live, config) if live is not None and dom.persistent else []
    count = dom.vcpucount
    return {
        "name": dom.name,
        "state": dom.state,
        "persistent": dom.persistent,
        "vcpu_max_config": config.vcpu_max if count.max_config is None else count.max_config,
        "vcpu_current_config": (
            config.vcpu_current if count.current_config is None else count.current_config
        ),
        "vcpu_max_live": count.max_live,
        "vcpu_current_live": count.current_live,
        "memory_kib": effective.memory_kib,
        "current_memory_kib": (
            dom.balloon_current_kib
            if dom.balloon_current_kib is not None
            else effective.current_memory_kib
        ),
        "numatune_mode": effective.numatune_mode or "",
        "numatune_nodeset": (
            format_nodeset(effective.numatune_nodeset) if effective.numatune_nodeset else ""
        ),
        "emulatorpin": _fmt(dom.emulatorpin_live),
        "emulatorpin_config": _fmt(config.emulatorpin),
        "placement": numa.placement_kind(
            topology, online, effective.vcpupin, effective.vcpu_cpuset
        ),
        "cells": format_nodeset(cells) if cells else "",
        "memory_cells": (
            format_nodeset(effective.numatune_nodeset) if effective.numatune_nodeset else ""
        ),
        "cross_node": numa.is_cross_node(
            topology, cells, effective.numatune_mode, effective.numatune_nodeset
        ),
        "drift": bool(drift),
        "drift_detail": "\n".join(drift),
        "tuning_live": tuning_dict(live) if live is not None else None,
        "tuning_config": tuning_dict(config),
    }


def _vcpu_rows(dom: DomainInventory, topology: HostTopology) -> list[dict[str, Any]]:
    """One row per vCPU up to the larger maximum (live or config)."""
    config, live, effective = dom.config, dom.live, dom.effective
    info = {v.vcpu: v for v in dom.vcpu_info}
    everywhere = topology.cpu_ids
    rows = []
    for vcpu in range(max(config.vcpu_max, live.vcpu_max if live else 0)):
        seen = info.get(vcpu)
        online = effective.vcpus_enabled.get(vcpu, vcpu < effective.vcpu_current)
        if seen is not None:
            affinity, last_cpu, state = (
                seen.affinity,
                (seen.cpu if seen.cpu >= 0 else None),
                seen.state,
            )
        else:
            # Not running, or an offline vCPU: what the definition says it may use.
            affinity = effective.effective_vcpu_affinity(vcpu) or everywhere
            last_cpu, state = None, "offline" if live is not None else ""
        rows.append(
            {
                "vcpu": vcpu,
                "online": online,
                "pin_live": _fmt(live.vcpupin.get(vcpu)) if live is not None else "",
                "pin_config": _fmt(config.vcpupin.get(vcpu)),
                "affinity": _fmt(affinity),
                "last_cpu": last_cpu,
                "state": state,
            }
        )
    return rows


_VM_UPDATE_FIELDS = [
    "name",
    "state",
    "persistent",
    "last_seen_at",
    "gone_at",
    "vcpu_max_config",
    "vcpu_current_config",
    "vcpu_max_live",
    "vcpu_current_live",
    "memory_kib",
    "current_memory_kib",
    "numatune_mode",
    "numatune_nodeset",
    "emulatorpin",
    "emulatorpin_config",
    "placement",
    "cells",
    "memory_cells",
    "cross_node",
    "drift",
    "drift_detail",
    "tuning_live",
    "tuning_config",
]
_VCPU_UPDATE_FIELDS = ["online", "pin_live", "pin_config", "affinity", "last_cpu", "state"]


def apply_inventory(host: Host, inventory: HostInventory) -> Host:
    """Store *inventory* as *host*'s state in one transaction, with a constant number of queries.

    Host facts; cells and physical CPUs (rows that disappeared are deleted); VMs matched by
    uuid (updated or created; VMs not in the inventory get ``gone_at``, never deleted; a gone
    VM that is back gets ``gone_at`` cleared) and their vCPU rows. Upserts on the unique
    constraints (host+cell, host+cpu, host+uuid, vm+vcpu) keep row ids stable across syncs.
    """
    info, topology = inventory.host, inventory.topology
    now = timezone.now()
    with transaction.atomic():
        # Serialise concurrent syncs of one host (a "Sync now" racing the periodic one).
        Host.objects.select_for_update().filter(pk=host.pk).values_list("pk").first()

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
                "hostname",
                "hypervisor",
                "libvirt_version",
                "arch",
                "cpu_model",
                "cpu_vendor",
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

        # VMs: upsert those seen (which also brings gone ones back), then mark the rest gone.
        VirtualMachine.objects.bulk_create(
            [
                VirtualMachine(
                    host=host,
                    uuid=dom.uuid,
                    last_seen_at=now,
                    gone_at=None,
                    **_vm_fields(dom, topology),
                )
                for dom in inventory.domains
            ],
            update_conflicts=True,
            unique_fields=["host", "uuid"],
            update_fields=_VM_UPDATE_FIELDS,
        )
        VirtualMachine.objects.filter(host=host, gone_at__isnull=True).filter(
            Q(last_seen_at__lt=now) | Q(last_seen_at__isnull=True)
        ).update(gone_at=now)

        vm_pk = {
            str(vm_uuid): pk
            for vm_uuid, pk in VirtualMachine.objects.filter(
                host=host, last_seen_at=now
            ).values_list("uuid", "pk")
        }
        VcpuPin.objects.bulk_create(
            [
                VcpuPin(vm_id=vm_pk[str(uuid_module.UUID(dom.uuid))], **row)
                for dom in inventory.domains
                for row in _vcpu_rows(dom, topology)
            ],
            update_conflicts=True,
            unique_fields=["vm", "vcpu"],
            update_fields=_VCPU_UPDATE_FIELDS,
        )
        # vCPU rows above a present VM's new maximum (its maximum was lowered).
        VcpuPin.objects.filter(vm__host=host, vm__last_seen_at=now).filter(
            vcpu__gte=F("vm__vcpu_max_config")
        ).filter(Q(vm__vcpu_max_live__isnull=True) | Q(vcpu__gte=F("vm__vcpu_max_live"))).delete()
    return host
