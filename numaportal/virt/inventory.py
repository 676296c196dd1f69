"""One host's inventory in as few libvirt round trips as possible: what a sync stores.

Cost of :func:`read_inventory`, in libvirt calls (each one RPC round trip on a remote URI;
nothing is called per vCPU):

per host (10 calls, whatever the number of domains)
    8 in :func:`~numaportal.virt.hostfacts.host_info` (getURI, getCapabilities, getCPUMap,
    getHostname, getType, getLibVersion, getVersion, getCellsFreeMemory — the last one once
    for the whole cell range), 1 ``getAllDomainStats(STATE | VCPU | BALLOON)`` for every
    domain's state, vCPU counts and balloon, 1 ``listAllDomains(TRANSIENT)`` to know which
    domains have no persistent config (usually an empty answer; it saves an ``isPersistent``
    call per domain).

per running domain (3 calls)
    ``XMLDesc(VIR_DOMAIN_XML_INACTIVE)`` (persistent tuning), ``XMLDesc(0)`` (live tuning: pins,
    emulatorpin, numatune, online vCPUs) and ``vcpus()`` (where each vCPU last ran, its state and
    effective affinity — the ``virsh vcpuinfo`` columns the XML does not have).

per shut-off domain (1 call)
    ``XMLDesc(VIR_DOMAIN_XML_INACTIVE)``.

Names and UUIDs come with the domain objects ``getAllDomainStats`` returns (cached client
side), the vCPU count matrix is derived from the two XML documents and the stats (no
``vcpusFlags`` calls), the live emulator pin from the live XML (no ``emulatorPinInfo``).

After a change the worker needs one domain, not the host: :func:`domain_from_snapshot` builds
its :class:`DomainInventory` from the change's "after" snapshot (persistent and live XML,
``vcpucount``, ``vcpuinfo``, read right after the change), so refreshing the VM costs no libvirt
call at all, whatever the number of domains on the host.

A domain that disappears between the stats call and its own calls (undefined, or a transient
domain that stopped) is left out of this inventory, not an error: the next sync marks it gone.
A domain that stops between the two calls is recorded as shut off. Telling those races from
real errors costs one ``isActive`` call, made only when a per-domain call has failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import libvirt

from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.domain import DomainTuning, parse_domain
from numaportal.virt.domains import domain_state_name
from numaportal.virt.errors import DomainNotFound, VirtError, translate
from numaportal.virt.hostfacts import HostInfo, host_info, uri_of
from numaportal.virt.topology import HostTopology, parse_capabilities
from numaportal.virt.vcpus import VcpuCount, VcpuInfo, vcpu_info_from

__all__ = ["DomainInventory", "HostInventory", "domain_from_snapshot", "read_inventory"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Per-host libvirt calls of :func:`read_inventory` (see the module docstring).
CALLS_PER_HOST = 10
#: Per-domain libvirt calls: running, shut off.
CALLS_PER_RUNNING_DOMAIN = 3
CALLS_PER_STOPPED_DOMAIN = 1

_STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_BALLOON
)
# States in which there is no running QEMU to ask for live XML or vCPU placement.
_INACTIVE_STATES = frozenset({libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED})


@dataclass(frozen=True, slots=True)
class DomainInventory:
    """One domain as a sync sees it: state, both definitions and where its vCPUs run."""

    name: str
    uuid: str
    #: virsh's word: "running", "shut off", "paused", ...
    state: str
    persistent: bool
    #: Parsed persistent definition (``--inactive``); for a transient domain, its only one.
    config: DomainTuning
    #: Parsed live definition; None when not running.
    live: DomainTuning | None
    vcpucount: VcpuCount
    #: ``virsh vcpuinfo``: one entry per online vCPU; empty when not running.
    vcpu_info: tuple[VcpuInfo, ...]
    #: Explicit live ``<emulatorpin>``; None when not running or not pinned.
    emulatorpin_live: frozenset[int] | None
    #: Memory the balloon currently gives the guest (KiB), from the stats; None if unknown.
    balloon_current_kib: int | None = None

    @property
    def running(self) -> bool:
        return self.live is not None

    @property
    def effective(self) -> DomainTuning:
        """The definition in force: live when running, else the persistent one."""
        return self.live if self.live is not None else self.config


@dataclass(frozen=True, slots=True)
class HostInventory:
    """Everything one sync reads from one host."""

    host: HostInfo
    topology: HostTopology
    domains: tuple[DomainInventory, ...]


class _Vanished(Exception):
    """The domain went away (or stopped) between the stats call and a per-domain call."""


def _call(conn: libvirt.virConnect, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except libvirt.libvirtError as exc:
        raise translate(exc, uri_of(conn)) from exc


def _still_there(dom: libvirt.virDomain) -> bool:
    """Whether *dom* is still defined and running (False: it stopped or is gone)."""
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise _Vanished from exc
        return True  # cannot tell: the caller reports its original error


def _domain_call(conn: libvirt.virConnect, dom: libvirt.virDomain, fn: Callable[[], T]) -> T:
    """A per-domain call; :class:`_Vanished` if the domain no longer exists."""
    try:
        return _call(conn, fn)
    except DomainNotFound as exc:
        raise _Vanished from exc
    except VirtError:
        # Undefining races show up under other codes too; only a domain that is still
        # there makes this a real error.
        _still_there(dom)
        raise


def _live_call(conn: libvirt.virConnect, dom: libvirt.virDomain, fn: Callable[[], T]) -> T | None:
    """A live-only call; None when the domain stopped meanwhile.

    A domain being destroyed fails in several ways depending on how far QEMU got ("domain is
    not running", "cannot get CPU affinity of process N: No such process"): whatever the
    error, if the domain is no longer active it stopped, which is not an error of the sync.
    """
    try:
        return _call(conn, fn)
    except DomainNotFound as exc:
        raise _Vanished from exc
    except VirtError:
        if _still_there(dom):
            raise
        return None


def _vcpucount(
    stats: Mapping[str, Any],
    config: DomainTuning,
    live: DomainTuning | None,
    persistent: bool,
) -> VcpuCount:
    max_live = current_live = None
    if live is not None:
        # The stats' counts are what `virsh vcpucount --live` reports; the live XML says the
        # same and stands in when a driver (the test driver) has no VCPU stats.
        max_live = int(stats.get("vcpu.maximum", live.vcpu_max))
        current_live = int(stats.get("vcpu.current", live.vcpu_current))
    return VcpuCount(
        max_config=config.vcpu_max if persistent else None,
        max_live=max_live,
        current_config=config.vcpu_current if persistent else None,
        current_live=current_live,
    )


def _read_domain(
    conn: libvirt.virConnect,
    dom: libvirt.virDomain,
    stats: Mapping[str, Any],
    persistent: bool,
) -> DomainInventory:
    state = int(stats.get("state.state", libvirt.VIR_DOMAIN_NOSTATE))
    config = parse_domain(
        _domain_call(conn, dom, lambda: dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    )
    live: DomainTuning | None = None
    vcpu_info: tuple[VcpuInfo, ...] = ()
    if state not in _INACTIVE_STATES:
        live_xml = _live_call(conn, dom, lambda: dom.XMLDesc(0))
        parsed = parse_domain(live_xml) if live_xml is not None else None
        # XMLDesc(0) of a domain that stopped meanwhile is its inactive XML (no id=).
        if parsed is not None and parsed.is_live_xml:
            live = parsed
            placement = _live_call(conn, dom, dom.vcpus)
            if placement is None:
                live = None
            else:
                vcpu_info = vcpu_info_from(*placement)
        if live is None:
            state = libvirt.VIR_DOMAIN_SHUTOFF
    balloon = stats.get("balloon.current")
    return DomainInventory(
        name=dom.name(),
        uuid=dom.UUIDString(),
        state=domain_state_name(state),
        persistent=persistent,
        config=config,
        live=live,
        vcpucount=_vcpucount(stats, config, live, persistent),
        vcpu_info=vcpu_info,
        emulatorpin_live=None if live is None else live.emulatorpin,
        balloon_current_kib=int(balloon) if balloon is not None and live is not None else None,
    )


def read_inventory(conn: libvirt.virConnect) -> HostInventory:
    """Host facts, topology and every domain with its tuning (cost: see the module docstring).

    Raises a :class:`~numaportal.virt.errors.VirtError` for libvirt failures,
    :class:`~numaportal.virt.topology.TopologyError` for capabilities it cannot parse and
    :class:`~numaportal.virt.domain.DomainXMLError` for a domain XML it cannot parse.
    """
    info = host_info(conn)
    topology = parse_capabilities(info.capabilities_xml)
    all_stats = _call(conn, lambda: conn.getAllDomainStats(_STATS, 0))
    transient = {
        dom.UUIDString()
        for dom in _call(
            conn, lambda: conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)
        )
    }
    domains: list[DomainInventory] = []
    for dom, stats in all_stats:
        try:
            domains.append(_read_domain(conn, dom, stats, dom.UUIDString() not in transient))
        except _Vanished:
            log.info("domain %s vanished during the inventory of %s", dom.name(), info.uri)
    domains.sort(key=lambda d: (d.name, d.uuid))
    return HostInventory(host=info, topology=topology, domains=tuple(domains))


def _vcpu_info_of(rows: Any) -> tuple[VcpuInfo, ...]:
    return tuple(
        VcpuInfo(
            vcpu=int(row["vcpu"]),
            state=str(row["state"]),
            cpu_time_ns=int(row.get("cpu_time_ns") or 0),
            cpu=int(row["cpu"]),
            affinity=parse_cpuset(row["affinity"]) if row.get("affinity") else frozenset(),
        )
        for row in rows or ()
    )


def domain_from_snapshot(snap: Mapping[str, Any]) -> DomainInventory:
    """A domain's inventory from ``DomainSnapshot.as_dict()`` (a change's before or after).

    The same fields a sync reads, taken from the XML, ``vcpucount`` and ``vcpuinfo`` the
    snapshot holds; the balloon is not part of a snapshot (``balloon_current_kib`` None).
    Raises :class:`~numaportal.virt.domain.DomainXMLError` for XML that does not parse, and
    KeyError / ValueError for a snapshot that is not one.
    """
    config = parse_domain(snap["persistent_xml"])
    live_xml = snap.get("live_xml")
    live = parse_domain(live_xml) if live_xml else None
    count = snap.get("vcpucount") or {}
    return DomainInventory(
        name=str(snap["name"]),
        uuid=str(snap["uuid"]),
        state=str(snap["state"]),
        persistent=bool(snap.get("persistent", True)),
        config=config,
        live=live,
        vcpucount=VcpuCount(
            max_config=count.get("max_config"),
            max_live=count.get("max_live"),
            current_config=count.get("current_config"),
            current_live=count.get("current_live"),
        ),
        vcpu_info=_vcpu_info_of(snap.get("vcpu_info")) if live is not None else (),
        emulatorpin_live=None if live is None else live.emulatorpin,
    )
