"""Whether a plan still matches its host: a digest of what it was computed from (every VM as
the planner sees it, and the host's cells), compared when it is approved.

A sync that found the same inventory does not make a plan stale; a sync that changed it, or a
VM locked since, does.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.utils import timezone

from balancing import planner
from balancing.inputs import demands_for_host
from balancing.models import BalancingPlan
from hosts.models import Host
from hosts.services import load_topology
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import HostTopology

log = logging.getLogger(__name__)

Status = BalancingPlan.Status


__all__ = ["inventory_digest", "staleness"]


def inventory_digest(topology: HostTopology | None, demands: list[planner.VmDemand]) -> str:
    """sha256 of what a plan depends on: every VM as the planner sees it (its vCPUs, memory,
    pins, cells, locked / dedicated flags) and the host's cells, CPUs and memory."""
    shape = (
        ";".join(
            f"{cell.id}:{cell.memory_kib}:{format_cpuset(cell.cpu_ids) if cell.cpus else ''}"
            for cell in topology.cells
        )
        if topology is not None
        else "no topology"
    )
    text = f"{planner.demand_digest(demands)}\n{shape}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "never"


def staleness(plan: BalancingPlan) -> str:
    """Why *plan* no longer matches its host's stored inventory; "" while it still does.

    The inventory is compared whatever the sync times say: a VM locked by an operator after
    the plan was computed must not be moved by it either.
    """
    host = Host.objects.get(pk=plan.host_id)
    if host.removed_at is not None:
        return f"stale: host {host.name} was removed from the portal"
    topology = load_topology(host)
    current = inventory_digest(topology, demands_for_host(host))
    if current == plan.inventory_digest:
        return ""
    synced_since = host.last_sync_ok_at is not None and (
        plan.based_on_sync_at is None or host.last_sync_ok_at > plan.based_on_sync_at
    )
    if synced_since:
        return (
            "stale: the inventory changed since this plan was computed "
            f"(sync at {_when(host.last_sync_ok_at)}); plan again"
        )
    return "stale: the VMs changed since this plan was computed; plan again"
