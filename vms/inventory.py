"""The VM half of a sync: a host's domains as VirtualMachine and VcpuPin rows.

:func:`store_domains` runs inside :func:`vms.sync.apply_inventory`'s transaction, after the
host half (:func:`hosts.services.store_host_facts`), in a constant number of queries whatever
the number of VMs. VMs are matched by uuid (updated or created; VMs not in the inventory get
``gone_at``, never deleted; a gone VM that is back gets ``gone_at`` cleared); upserts on
(host, uuid) and (vm, vcpu) keep row ids stable across syncs.

:func:`store_domain` writes one VM and its vCPU rows only (the refresh after a change), in a
constant number of queries whatever the number of VMs on the host.
"""

from __future__ import annotations

import uuid as uuid_module
from datetime import datetime
from typing import Any

from django.db.models import F, Q

from hosts.models import Host
from numaportal.virt.cpuset import format_cpuset, format_nodeset
from numaportal.virt.domain import tuning_dict
from numaportal.virt.inventory import DomainInventory, HostInventory
from numaportal.virt.topology import HostTopology
from vms import numa
from vms.models import VcpuPin, VirtualMachine

__all__ = ["store_domain", "store_domains"]


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
        "pinning": numa.pinning_state(topology, online, effective.vcpupin, effective.vcpu_cpuset),
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
    "pinning",
    "cells",
    "memory_cells",
    "cross_node",
    "drift",
    "drift_detail",
    "tuning_live",
    "tuning_config",
]
_VCPU_UPDATE_FIELDS = ["online", "pin_live", "pin_config", "affinity", "last_cpu", "state"]


def store_domains(host: Host, inventory: HostInventory, now: datetime) -> None:
    """Upsert the VMs and vCPU rows of *inventory*; mark VMs not in it gone."""
    topology = inventory.topology
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
        for vm_uuid, pk in VirtualMachine.objects.filter(host=host, last_seen_at=now).values_list(
            "uuid", "pk"
        )
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


def store_domain(
    vm: VirtualMachine, dom: DomainInventory, topology: HostTopology, now: datetime
) -> None:
    """Write one VM's row and vCPU rows from *dom* (4 queries); the host's other VMs untouched.

    A snapshot has no balloon reading, so the VM keeps the current memory the last sync read
    (a pinning or vCPU change does not move the balloon).
    """
    fields = _vm_fields(dom, topology)
    if dom.balloon_current_kib is None:
        del fields["current_memory_kib"]
    VirtualMachine.objects.filter(pk=vm.pk).update(last_seen_at=now, gone_at=None, **fields)
    rows = _vcpu_rows(dom, topology)
    VcpuPin.objects.bulk_create(
        [VcpuPin(vm_id=vm.pk, **row) for row in rows],
        update_conflicts=True,
        unique_fields=["vm", "vcpu"],
        update_fields=_VCPU_UPDATE_FIELDS,
    )
    # vCPU rows above the new maximum (a lowered maximum).
    VcpuPin.objects.filter(vm_id=vm.pk, vcpu__gte=len(rows)).delete()
