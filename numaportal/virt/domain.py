"""A VM's CPU/NUMA tuning from its domain XML (``virsh dumpxml``, live or ``--inactive``).

Only what NUMA placement cares about is extracted: vCPU counts, the default ``<vcpu cpuset>``,
``<cputune>`` pins, ``<numatune>``, memory sizes, per-vCPU hotplug state, and the two
prerequisites the seed's hot-add/unplug workflow trips over (ACPI for unplug, the guest agent
channel for onlining CPUs inside the guest).

The parsed values are libvirt's own reading of the document: what ``XMLDesc`` writes back after
``defineXML`` of it (libvirt's defaults filled in, what libvirt ignores left out: a ``<vcpu
cpuset>`` under ``placement='auto'``, a ``<vcpupin>`` of a vCPU the domain does not have), so a
hand-written document and libvirt's canonical one of the same VM parse equal, and the live and
persistent XML of one VM can be compared field by field ("live-only: lost at next shutdown").
tests/libvirt/test_oracle_domain.py checks that against libvirt itself.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from numaportal.virt.cpuset import (
    MAX_CPU_ID,
    CpusetError,
    format_cpuset,
    format_nodeset,
    parse_cpuset,
    parse_nodeset,
)
from numaportal.virt.memsize import size_kib
from numaportal.virt.topology import fromstring_untrusted

__all__ = [
    "GUEST_AGENT_CHANNEL",
    "DomainTuning",
    "DomainXMLError",
    "GuestNumaCell",
    "MemNode",
    "parse_domain",
    "tuning_dict",
]

#: The virtio-serial port name qemu-guest-agent listens on; ``setGuestVcpus`` needs it.
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"


class DomainXMLError(ValueError):
    """Domain XML that cannot be turned into a :class:`DomainTuning`."""


@dataclass(frozen=True, slots=True)
class GuestNumaCell:
    """A guest-visible NUMA cell: ``<cpu><numa><cell id= cpus= memory=>``."""

    id: int
    cpus: frozenset[int]
    memory_kib: int


@dataclass(frozen=True, slots=True)
class MemNode:
    """Per-guest-cell memory policy: ``<numatune><memnode cellid= mode= nodeset=>``."""

    cell_id: int
    mode: str | None
    nodeset: frozenset[int] | None


@dataclass(frozen=True, slots=True)
class DomainTuning:
    """CPU/NUMA tuning of one domain, from one XML document (live or persistent)."""

    name: str
    #: ``<uuid>``; None when the document has none (libvirt generates one at define time, so XML
    #: from libvirt always has it, and the inventory takes a domain's uuid from the API anyway).
    uuid: str | None
    #: ``<vcpu>N</vcpu>``: the maximum vCPU count (what can be hot-added up to).
    vcpu_max: int
    #: ``<vcpu current=...>``, or vcpu_max when absent.
    vcpu_current: int
    #: ``<vcpu placement=...>`` as libvirt reads it: "static" (its default) or "auto" (numad
    #: decides; libvirt also makes a VM with ``<numatune><memory placement='auto'>`` and no pin
    #: of any kind "auto").
    vcpu_placement: str | None
    #: ``<vcpu cpuset=...>``: default affinity of vCPUs without their own <vcpupin>. None when
    #: absent, when it names every id libvirt can hold (libvirt writes no mask then), and under
    #: placement "auto", where libvirt ignores the attribute: numad, not it, decides.
    vcpu_cpuset: frozenset[int] | None
    #: ``<cputune><vcpupin vcpu=N cpuset=...>``: vCPU index -> host CPUs.
    vcpupin: dict[int, frozenset[int]]
    #: ``<cputune><emulatorpin cpuset=...>``: where QEMU's non-vCPU threads may run.
    emulatorpin: frozenset[int] | None
    #: ``<numatune><memory mode= nodeset= placement=>`` as libvirt reads it: mode defaults to
    #: "strict"; placement is "auto" or None for a static binding to the nodeset (libvirt writes
    #: no placement= then); an auto placement has no nodeset (libvirt drops one given with it).
    #: An auto-placed VM without <numatune> gets libvirt's implied strict, auto binding.
    numatune_mode: str | None
    numatune_nodeset: frozenset[int] | None
    numatune_placement: str | None
    #: ``<memory>``, or when it is absent (or 0) the sum of the guest NUMA cells and memory
    #: devices, which is how libvirt sizes such a domain. Partial KiB round up, as in libvirt.
    memory_kib: int
    #: ``<currentMemory>``; libvirt's total when absent, 0 or above the total.
    current_memory_kib: int
    #: ``<vcpus><vcpu id enabled=>``: vCPU index -> online from the host's point of view.
    vcpus_enabled: dict[int, bool]
    #: ``<features><acpi/>``: without it QEMU cannot unplug vCPUs.
    has_acpi: bool
    #: a ``<channel>`` whose target is org.qemu.guest_agent.0 (needed for setGuestVcpus).
    has_guest_agent_channel: bool
    #: ``<domain type=...>``: "kvm", "qemu" (TCG), "test" (libvirt's test driver).
    domain_type: str
    #: ``<vcpus><vcpu id hotpluggable=>``: vCPU index -> may be hot-(un)plugged.
    vcpus_hotpluggable: dict[int, bool] = field(default_factory=dict)
    #: ``<cpu><numa><cell>``: the guest's own NUMA layout, empty when it has none.
    guest_numa_cells: tuple[GuestNumaCell, ...] = ()
    #: ``<numatune><memnode>`` by guest cell id.
    numatune_memnodes: dict[int, MemNode] = field(default_factory=dict)
    #: ``<domain id=...>``: present only in the XML of a running domain.
    domain_id: int | None = None
    #: live XML says whether the agent is connected (``<target state=...>``); None if unknown.
    guest_agent_connected: bool | None = None

    @property
    def is_live_xml(self) -> bool:
        """True when this was parsed from a running domain's live XML (it carries an id)."""
        return self.domain_id is not None

    def effective_vcpu_affinity(self, vcpu: int) -> frozenset[int] | None:
        """Host CPUs vCPU *vcpu* may run on per this XML; None means "any" (unpinned).

        A <vcpupin> wins over the domain-wide ``<vcpu cpuset>``, which is libvirt's rule. Under
        ``placement='auto'`` there is no domain-wide cpuset (numad's choice is only in the live
        vCPU info), so an unpinned vCPU of an auto-placed VM is None here.
        """
        return self.vcpupin.get(vcpu, self.vcpu_cpuset)


_BOOL = {"yes": True, "no": False, "on": True, "off": False}


def _where(elem: ET.Element) -> str:
    return f"<{elem.tag}>"


def _int_attr(elem: ET.Element, attr: str, *, required: bool = True) -> int | None:
    raw = elem.get(attr) if attr else elem.text
    label = f"attribute {attr!r} of <{elem.tag}>" if attr else f"<{elem.tag}> text"
    if raw is None or not raw.strip():
        if required:
            raise DomainXMLError(f"domain XML: missing {label}")
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        raise DomainXMLError(f"domain XML: {label} is {raw!r}, expected a non-negative integer")
    return int(raw)


def _req_int(elem: ET.Element, attr: str) -> int:
    value = _int_attr(elem, attr)
    assert value is not None
    return value


def _bool_attr(elem: ET.Element, attr: str) -> bool | None:
    raw = elem.get(attr)
    if raw is None:
        return None
    try:
        return _BOOL[raw.strip().lower()]
    except KeyError:
        raise DomainXMLError(
            f"domain XML: attribute {attr!r} of <{elem.tag}> is {raw!r}, expected yes/no"
        ) from None


def _set_attr(
    elem: ET.Element | None, attr: str, *, nodeset: bool = False
) -> frozenset[int] | None:
    if elem is None:
        return None
    raw = elem.get(attr)
    if raw is None:
        return None
    try:
        return parse_nodeset(raw) if nodeset else parse_cpuset(raw)
    except CpusetError as exc:
        raise DomainXMLError(f"domain XML: {_where(elem)} {attr}=: {exc}") from None


def _size_kib(raw: str | None, unit: str | None, label: str) -> int | None:
    try:
        return size_kib(raw, unit)
    except ValueError as exc:
        raise DomainXMLError(f"domain XML: {label}: {exc}") from None


def _memory(elem: ET.Element | None) -> int | None:
    if elem is None:
        return None
    return _size_kib(elem.text, elem.get("unit"), f"<{elem.tag}> text")


def _devices_kib(root: ET.Element) -> int:
    """Memory devices (DIMMs, virtio-mem, ...): libvirt adds them to a size from NUMA cells."""
    total = 0
    for device in root.findall("devices/memory"):
        size = device.find("target/size")
        kib = None if size is None else _size_kib(size.text, size.get("unit"), "<size> text")
        if kib is None:
            raise DomainXMLError("domain XML: memory device without <target><size>")
        total += kib
    return total


def _text(root: ET.Element, path: str) -> str:
    elem = root.find(path)
    if elem is None or elem.text is None or not elem.text.strip():
        raise DomainXMLError(f"domain XML: missing <{path}>")
    return elem.text.strip()


def _parse_vcpupin(root: ET.Element, vcpu_max: int) -> dict[int, frozenset[int]]:
    pins: dict[int, frozenset[int]] = {}
    # Every <cputune>, as libvirt's XPath ./cputune/vcpupin reads them.
    for pin in root.findall("cputune/vcpupin"):
        vcpu = _req_int(pin, "vcpu")
        if vcpu >= vcpu_max:
            # libvirt ignores (without parsing its cpuset) a pin of a vCPU the domain lacks.
            continue
        if vcpu in pins:
            raise DomainXMLError(f"domain XML: vCPU {vcpu} has more than one <vcpupin>")
        cpus = _set_attr(pin, "cpuset")
        if cpus is None:
            raise DomainXMLError(f"domain XML: <vcpupin vcpu='{vcpu}'> has no cpuset")
        pins[vcpu] = cpus
    return dict(sorted(pins.items()))


def _parse_vcpus(root: ET.Element) -> tuple[dict[int, bool], dict[int, bool]]:
    enabled: dict[int, bool] = {}
    hotpluggable: dict[int, bool] = {}
    for vcpu in root.findall("vcpus/vcpu"):
        vcpu_id = _req_int(vcpu, "id")
        if vcpu_id in enabled:
            raise DomainXMLError(f"domain XML: <vcpus> lists vCPU {vcpu_id} twice")
        is_enabled = _bool_attr(vcpu, "enabled")
        if is_enabled is None:
            raise DomainXMLError(f"domain XML: <vcpu id='{vcpu_id}'> in <vcpus> has no enabled=")
        enabled[vcpu_id] = is_enabled
        plug = _bool_attr(vcpu, "hotpluggable")
        if plug is not None:
            hotpluggable[vcpu_id] = plug
    return dict(sorted(enabled.items())), dict(sorted(hotpluggable.items()))


def _parse_guest_numa(root: ET.Element) -> tuple[GuestNumaCell, ...]:
    cells: list[GuestNumaCell] = []
    for cell in root.findall("cpu/numa/cell"):
        # Older XML may omit id=; libvirt then numbers cells in document order.
        cell_id = _int_attr(cell, "id", required=False)
        cpus = _set_attr(cell, "cpus")
        label = "attribute 'memory' of <cell>"
        memory_kib = _size_kib(cell.get("memory"), cell.get("unit"), label)
        if memory_kib is None:
            raise DomainXMLError(f"domain XML: missing {label}")
        cells.append(
            GuestNumaCell(
                id=len(cells) if cell_id is None else cell_id,
                # A guest cell without cpus= is a memory-only guest node.
                cpus=cpus if cpus is not None else frozenset(),
                memory_kib=memory_kib,
            )
        )
    return tuple(cells)


def _parse_agent(root: ET.Element) -> tuple[bool, bool | None]:
    for target in root.findall("devices/channel/target"):
        if target.get("name") == GUEST_AGENT_CHANNEL:
            state = target.get("state")
            connected = None if state is None else state == "connected"
            return True, connected
    return False, None


_VCPU_PLACEMENTS = ("static", "auto")
# virDomainNumatunePlacement: "default" means "static with a nodeset, else the vCPUs' placement".
_NUMATUNE_PLACEMENTS = ("default", "static", "auto")
# libvirt's <numatune> modes (numaportal.virt.numatune.NUMATUNE_MODES maps them to libvirt's
# constants; this module stays free of the libvirt binding).
_NUMATUNE_MODES = ("strict", "preferred", "interleave", "restrictive")

Numatune = tuple[str | None, frozenset[int] | None, str | None]


def _choice(elem: ET.Element, attr: str, allowed: tuple[str, ...], default: str) -> str:
    raw = elem.get(attr)
    if raw is None:
        return default
    if raw not in allowed:  # libvirt's enums are exact: "AUTO" or " auto" are refused
        raise DomainXMLError(
            f"domain XML: <{elem.tag} {attr}={raw!r}> is not one of {', '.join(allowed)}"
        )
    return raw


def _parse_numatune(root: ET.Element, vcpu_auto: bool) -> Numatune:
    """``<numatune><memory>`` as (mode, nodeset, placement), read as virDomainNumatuneSet does."""
    memory = root.find("numatune/memory")
    if memory is None:
        # libvirt gives a VM whose vCPUs numad places a strict, numad-placed memory binding.
        return ("strict", None, "auto") if vcpu_auto else (None, None, None)
    mode = _choice(memory, "mode", _NUMATUNE_MODES, "strict")
    placement = _choice(memory, "placement", _NUMATUNE_PLACEMENTS, "default")
    nodeset = _set_attr(memory, "nodeset", nodeset=True)  # checked even where then dropped
    if placement == "default":
        placement = "static" if nodeset is not None or not vcpu_auto else "auto"
    if placement == "auto":
        return mode, None, "auto"
    if nodeset is None:
        raise DomainXMLError("domain XML: <numatune><memory> placed statically needs a nodeset=")
    return mode, nodeset, None


def _parse_memnodes(root: ET.Element) -> dict[int, MemNode]:
    memnodes: dict[int, MemNode] = {}
    for memnode in root.findall("numatune/memnode"):
        cell_id = _req_int(memnode, "cellid")
        if cell_id in memnodes:
            raise DomainXMLError(f"domain XML: more than one <memnode cellid='{cell_id}'>")
        nodeset = _set_attr(memnode, "nodeset", nodeset=True)
        if nodeset is None:
            raise DomainXMLError(f"domain XML: <memnode cellid='{cell_id}'> has no nodeset")
        mode = _choice(memnode, "mode", _NUMATUNE_MODES, "strict")
        memnodes[cell_id] = MemNode(cell_id=cell_id, mode=mode, nodeset=nodeset)
    return dict(sorted(memnodes.items()))


def _parse_emulatorpin(root: ET.Element) -> frozenset[int] | None:
    pins = root.findall("cputune/emulatorpin")
    if len(pins) > 1:
        raise DomainXMLError("domain XML: more than one <emulatorpin>")
    return _set_attr(pins[0], "cpuset") if pins else None


def _parse_memory(root: ET.Element, cells: tuple[GuestNumaCell, ...]) -> tuple[int, int]:
    """(memory, current memory) in KiB, sized as libvirt's virDomainDefPostParseMemory does."""
    memory_kib = _memory(root.find("memory"))
    if not memory_kib:
        memory_kib = sum(cell.memory_kib for cell in cells)
        if memory_kib:
            memory_kib += _devices_kib(root)
    if not memory_kib:
        raise DomainXMLError(
            "domain XML: missing <memory> (and no guest NUMA <cell memory=...> gives the size)"
        )
    current_kib = _memory(root.find("currentMemory"))
    if not current_kib or current_kib > memory_kib:
        current_kib = memory_kib
    return memory_kib, current_kib


def parse_domain(xml: str) -> DomainTuning:
    """Parse ``dom.XMLDesc()`` (live) or ``dom.XMLDesc(VIR_DOMAIN_XML_INACTIVE)`` output.

    Raises :class:`DomainXMLError` for malformed XML, a DOCTYPE, a missing name, no memory size,
    unparseable numbers and cpusets, and the values libvirt's enums do not have.
    """
    root = fromstring_untrusted(xml, DomainXMLError, "domain XML")
    if root.tag != "domain":
        raise DomainXMLError(f"domain XML: root element is <{root.tag}>, not <domain>")
    domain_type = root.get("type")
    if not domain_type:
        raise DomainXMLError("domain XML: <domain> has no type= (kvm, qemu, ...)")

    name = _text(root, "name")
    uuid_elem = root.find("uuid")
    uuid = None
    if uuid_elem is not None and uuid_elem.text is not None and uuid_elem.text.strip():
        uuid = uuid_elem.text.strip()

    guest_numa_cells = _parse_guest_numa(root)
    memory_kib, current_memory_kib = _parse_memory(root, guest_numa_cells)

    vcpu = root.find("vcpu")
    vcpu_auto, mask = False, None
    if vcpu is None:
        # libvirt fills in 1 when <vcpu> is missing at define time; dumpxml always writes it.
        vcpu_max, vcpu_current = 1, 1
    else:
        vcpu_max = _req_int(vcpu, "")
        current = _int_attr(vcpu, "current", required=False)
        vcpu_current = vcpu_max if current is None else current
        vcpu_auto = _choice(vcpu, "placement", _VCPU_PLACEMENTS, "static") == "auto"
        # Under placement='auto' libvirt does not even parse cpuset=: numad decides.
        mask = None if vcpu_auto else _set_attr(vcpu, "cpuset")
    if vcpu_max < 1:
        raise DomainXMLError("domain XML: <vcpu> maximum must be at least 1")
    if vcpu_current > vcpu_max:
        raise DomainXMLError(
            f"domain XML: <vcpu current='{vcpu_current}'> is above the maximum {vcpu_max}"
        )

    vcpupin = _parse_vcpupin(root, vcpu_max)
    emulatorpin = _parse_emulatorpin(root)
    numatune_mode, numatune_nodeset, numatune_placement = _parse_numatune(root, vcpu_auto)
    # libvirt lets numad place the vCPUs too when it places the memory and nothing is pinned.
    if (
        numatune_placement == "auto"
        and mask is None
        and not vcpupin
        and emulatorpin is None
        and root.find("cputune/iothreadpin") is None
    ):
        vcpu_auto = True

    vcpus_enabled, vcpus_hotpluggable = _parse_vcpus(root)
    has_agent, agent_connected = _parse_agent(root)

    return DomainTuning(
        name=name,
        uuid=uuid,
        vcpu_max=vcpu_max,
        vcpu_current=vcpu_current,
        vcpu_placement="auto" if vcpu_auto else "static",
        # A cpuset of every id libvirt's bitmap holds is written back as none: no restriction.
        vcpu_cpuset=None if mask is None or len(mask) == MAX_CPU_ID + 1 else mask,
        vcpupin=vcpupin,
        emulatorpin=emulatorpin,
        numatune_mode=numatune_mode,
        numatune_nodeset=numatune_nodeset,
        numatune_placement=numatune_placement,
        memory_kib=memory_kib,
        current_memory_kib=current_memory_kib,
        vcpus_enabled=vcpus_enabled,
        has_acpi=root.find("features/acpi") is not None,
        has_guest_agent_channel=has_agent,
        domain_type=domain_type,
        vcpus_hotpluggable=vcpus_hotpluggable,
        guest_numa_cells=guest_numa_cells,
        numatune_memnodes=_parse_memnodes(root),
        domain_id=_int_attr(root, "id", required=False),
        guest_agent_connected=agent_connected,
    )


def _fmt(cpus: frozenset[int] | None, *, nodeset: bool = False) -> str | None:
    if cpus is None:
        return None
    if not cpus:
        return ""
    return format_nodeset(cpus) if nodeset else format_cpuset(cpus)


def tuning_dict(t: DomainTuning) -> dict[str, Any]:
    """A JSON-serialisable snapshot of *t* for audit records and before/after diffs.

    Sets become canonical cpuset strings (so equal sets give equal strings and diffs are
    readable: ``"22"`` -> ``"10"``); per-vCPU maps are keyed by the vCPU index as a string,
    because JSON object keys are strings anyway and this keeps a round-trip through JSON equal.
    """
    return {
        "name": t.name,
        "uuid": t.uuid,
        "domain_type": t.domain_type,
        "domain_id": t.domain_id,
        "vcpu_max": t.vcpu_max,
        "vcpu_current": t.vcpu_current,
        "vcpu_placement": t.vcpu_placement,
        "vcpu_cpuset": _fmt(t.vcpu_cpuset),
        "vcpupin": {str(vcpu): _fmt(cpus) for vcpu, cpus in sorted(t.vcpupin.items())},
        "emulatorpin": _fmt(t.emulatorpin),
        "numatune_mode": t.numatune_mode,
        "numatune_nodeset": _fmt(t.numatune_nodeset, nodeset=True),
        "numatune_placement": t.numatune_placement,
        "numatune_memnodes": {
            str(cell_id): {"mode": node.mode, "nodeset": _fmt(node.nodeset, nodeset=True)}
            for cell_id, node in sorted(t.numatune_memnodes.items())
        },
        "memory_kib": t.memory_kib,
        "current_memory_kib": t.current_memory_kib,
        "vcpus_enabled": {str(v): on for v, on in sorted(t.vcpus_enabled.items())},
        "vcpus_hotpluggable": {str(v): on for v, on in sorted(t.vcpus_hotpluggable.items())},
        "guest_numa_cells": [
            {"id": cell.id, "cpus": _fmt(cell.cpus), "memory_kib": cell.memory_kib}
            for cell in t.guest_numa_cells
        ],
        "has_acpi": t.has_acpi,
        "has_guest_agent_channel": t.has_guest_agent_channel,
        "guest_agent_connected": t.guest_agent_connected,
    }
