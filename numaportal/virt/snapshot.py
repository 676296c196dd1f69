"""A domain's whole CPU/NUMA placement at one moment, for the before/after of an audit record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import libvirt

from numaportal.virt._calls import call, live_query, retrying
from numaportal.virt.cpuset import cpumap_to_cpuset, format_cpuset
from numaportal.virt.domain import DomainTuning, DomainXMLError, parse_domain, tuning_dict
from numaportal.virt.domains import Domain, domain_state_name
from numaportal.virt.errors import OperationFailed
from numaportal.virt.vcpus import VcpuCount, VcpuInfo, read_vcpu_info, read_vcpucount

__all__ = ["DomainSnapshot", "snapshot"]


def _fmt_set(cpus: frozenset[int] | None) -> str | None:
    if cpus is None:
        return None
    return format_cpuset(cpus) if cpus else ""


@dataclass(frozen=True)
class DomainSnapshot:
    """Everything about a domain's CPU/NUMA placement at one moment, for an audit record."""

    name: str
    uuid: str
    state: str
    persistent: bool
    persistent_xml: str
    live_xml: str | None
    config_tuning: DomainTuning
    live_tuning: DomainTuning | None
    vcpucount: VcpuCount
    vcpu_info: tuple[VcpuInfo, ...]
    emulatorpin_config: frozenset[int] | None
    emulatorpin_live: frozenset[int] | None

    @property
    def active(self) -> bool:
        return self.live_xml is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (cpusets as cpuset strings, as virsh prints them)."""
        return {
            "name": self.name,
            "uuid": self.uuid,
            "state": self.state,
            "active": self.active,
            "persistent": self.persistent,
            "persistent_xml": self.persistent_xml,
            "live_xml": self.live_xml,
            "config_tuning": tuning_dict(self.config_tuning),
            "live_tuning": tuning_dict(self.live_tuning) if self.live_tuning else None,
            "vcpucount": asdict(self.vcpucount),
            "vcpu_info": [
                {
                    "vcpu": v.vcpu,
                    "state": v.state,
                    "cpu_time_ns": v.cpu_time_ns,
                    "cpu": v.cpu,
                    "affinity": _fmt_set(v.affinity),
                }
                for v in self.vcpu_info
            ],
            "emulatorpin_config": _fmt_set(self.emulatorpin_config),
            "emulatorpin_live": _fmt_set(self.emulatorpin_live),
        }


def _parse(dom: Domain, xml: str, which: str) -> DomainTuning:
    try:
        return parse_domain(xml)
    except DomainXMLError as exc:
        raise OperationFailed(f"cannot parse the {which} XML: {exc}", None, dom.uri) from exc


def _emulatorpin(pins: Sequence[bool] | None) -> frozenset[int] | None:
    return None if pins is None else cpumap_to_cpuset(pins)


def _snapshot(dom: Domain, active: bool, persistent: bool) -> DomainSnapshot:
    virdomain = dom.virdomain
    live_flag = libvirt.VIR_DOMAIN_AFFECT_LIVE
    config_flag = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    state, _reason = call(dom, virdomain.state)
    persistent_xml = call(dom, lambda: virdomain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    live_xml = live_query(dom, lambda: virdomain.XMLDesc(0)) if active else None
    return DomainSnapshot(
        name=call(dom, virdomain.name),
        uuid=call(dom, virdomain.UUIDString),
        state=domain_state_name(state),
        persistent=persistent,
        persistent_xml=persistent_xml,
        live_xml=live_xml,
        config_tuning=_parse(dom, persistent_xml, "persistent"),
        live_tuning=_parse(dom, live_xml, "live") if live_xml is not None else None,
        vcpucount=read_vcpucount(dom, active, persistent),
        vcpu_info=read_vcpu_info(dom, active),
        emulatorpin_config=_emulatorpin(
            call(dom, lambda: virdomain.emulatorPinInfo(config_flag)) if persistent else None
        ),
        emulatorpin_live=_emulatorpin(
            live_query(dom, lambda: virdomain.emulatorPinInfo(live_flag)) if active else None
        ),
    )


def snapshot(dom: Domain) -> DomainSnapshot:
    """The domain's placement state now: XML (persistent and live), parsed tuning, vCPU counts,
    per-vCPU placement and emulator pinning. Live fields are None when it is not running."""
    return retrying(dom, lambda active, persistent: _snapshot(dom, active, persistent))
