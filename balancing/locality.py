"""Which VMs are under their host's locality threshold now: the least-local VMs of a host or
of the fleet (host page, dashboard) and what the scheduler's "locality" trigger looks at.

"Now" is each host's newest on-host sample (``VmLocalitySample.latest``) of VMs still present
and running; the threshold is the host's :class:`~balancing.models.BalancingPolicy`'s, or
:data:`~balancing.models.DEFAULT_LOCALITY_THRESHOLD` for a host without a policy. Every
function runs one query, whatever the number of hosts and VMs (the threshold is joined in).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import F, FloatField, QuerySet, Value
from django.db.models.functions import Coalesce

from balancing.models import DEFAULT_LOCALITY_THRESHOLD, BalancingPolicy
from hosts.models import Host
from vms.models import VmLocalitySample

__all__ = [
    "LEAST_LOCAL",
    "LeastLocal",
    "below_threshold",
    "below_threshold_by_host",
    "below_threshold_count",
    "least_local",
    "threshold_for",
]

#: How many of the least-local VMs the host page and the dashboard list.
LEAST_LOCAL = 10


@dataclass(frozen=True)
class LeastLocal:
    host_name: str
    vm_name: str
    vm_uuid: UUID
    #: The cells its vCPUs could run on at the sample (nodeset).
    home_cells: str
    locality: float
    threshold: float
    taken_at: datetime

    @property
    def below(self) -> bool:
        return self.locality < self.threshold


def threshold_for(host: Host) -> float:
    """The host's locality threshold (its policy's, or the default); one query."""
    value = (
        BalancingPolicy.objects.filter(host=host)
        .values_list("locality_threshold", flat=True)
        .first()
    )
    return DEFAULT_LOCALITY_THRESHOLD if value is None else float(value)


def _now(host: Host | None, hosts: list[Host] | None = None) -> QuerySet[VmLocalitySample]:
    rows = VmLocalitySample.objects.filter(
        latest=True,
        locality__isnull=False,
        vm__gone_at__isnull=True,
        vm__vcpu_current_live__isnull=False,  # shut off since the sample: no locality now
        host__removed_at__isnull=True,
    )
    if host is not None:
        rows = rows.filter(host=host)
    if hosts is not None:
        rows = rows.filter(host__in=[h.pk for h in hosts])
    return rows.annotate(
        threshold=Coalesce(
            F("host__balancing_policy__locality_threshold"),
            Value(DEFAULT_LOCALITY_THRESHOLD),
            output_field=FloatField(),
        )
    )


def least_local(host: Host | None = None, limit: int = LEAST_LOCAL) -> list[LeastLocal]:
    """The *limit* VMs with the lowest locality now, of *host* or of every host; lowest first."""
    rows = (
        _now(host)
        .order_by("locality", "host__name", "vm__name", "vm_id")
        .values_list(
            "host__name",
            "vm__name",
            "vm__uuid",
            "home_cells",
            "locality",
            "threshold",
            "taken_at",
        )[:limit]
    )
    return [LeastLocal(*row) for row in rows]


def below_threshold_count(host: Host | None = None) -> int:
    """How many VMs (of *host*, or of every host) are below their host's threshold now."""
    return _now(host).filter(locality__lt=F("threshold")).count()


def below_threshold(host: Host) -> dict[str, float]:
    """The host's VMs below its threshold now, name -> locality (the scheduler's trigger)."""
    rows = (
        _now(host)
        .filter(locality__lt=F("threshold"))
        .order_by("vm__name", "vm_id")
        .values_list("vm__name", "locality")
    )
    return {name: round(value, 4) for name, value in rows}


def below_threshold_by_host(hosts: list[Host]) -> dict[int, dict[str, float]]:
    """:func:`below_threshold` of every host of *hosts* at once: host id -> its VMs below
    its threshold now (name -> locality); one query for any number of hosts."""
    out: dict[int, dict[str, float]] = {host.pk: {} for host in hosts}
    rows = (
        _now(None, hosts)
        .filter(locality__lt=F("threshold"))
        .order_by("host_id", "vm__name", "vm_id")
        .values_list("host_id", "vm__name", "locality")
    )
    for host_id, name, value in rows:
        out[host_id][name] = round(value, 4)
    return out
