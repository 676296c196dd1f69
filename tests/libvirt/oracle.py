"""libvirt itself as the oracle for our parsers: its reading of a string or a domain document.

libvirt's in-process test driver (``test:///default``) parses a definition with the code every
driver uses (src/conf/domain_conf.c, src/util/virbitmap.c) and writes it back canonically:
``defineXML`` then ``XMLDesc(VIR_DOMAIN_XML_INACTIVE)``. What comes back, or the error the
definition is refused with, is libvirt's reading. This module only asks libvirt and reads its
canonical answers; it never uses the project's parsers, so a test can compare the two.

The channels a cpuset string can reach libvirt's bitmap parser through (all checked against each
other by the curated table of tests/libvirt/test_oracle_cpuset.py):

- ``vcpupin``, ``emulatorpin``: ``<cputune><vcpupin vcpu='0' cpuset=X>`` / ``<emulatorpin
  cpuset=X>``. libvirt parses X into a bitmap of 16384 bits (VIR_DOMAIN_CPUMASK_LEN) and keeps
  it whatever the host has (the test driver's host has 16 CPUs, yet ``16383`` is kept): ids up
  to libvirt's limit compare. An empty result is refused ("Invalid value of 'cpuset'").
- ``numatune``: ``<numatune><memory mode='strict' nodeset=X>``, the same for a nodeset.
- ``vcpu``: ``<vcpu cpuset=X>``, the same, except that a set of all 16384 ids is written back
  as no cpuset at all (:data:`EVERY_ID` here).
- ``numa_parameters``: ``setNumaParameters({nodeset: X})`` on a defined domain, read back with
  ``numaParameters``: the same parser with no XML in between, so it also takes what XML cannot
  carry ("\\v", "\\f"). One call per string and no define, so hypothesis uses this channel.

Strings travel in XML attributes as character references where XML would otherwise normalise
them (tab, newline, carriage return become spaces in a literal attribute value).
"""

from __future__ import annotations

import uuid as uuid_module
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import libvirt

CPUMASK_LEN = 16384
#: libvirt's reading of a ``<vcpu cpuset>`` that names every id it can hold: no cpuset.
EVERY_ID = frozenset(range(CPUMASK_LEN))

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG

# The characters XML 1.0 can carry at all, as a character reference or literally.
_XML_CHARS = {0x9, 0xA, 0xD}


def xml_can_carry(text: str) -> bool:
    """True when *text* can be an XML 1.0 attribute value (no "\\v", "\\f", NUL, ...)."""
    return all(ord(ch) >= 0x20 or ord(ch) in _XML_CHARS for ch in text) and not any(
        0xD800 <= ord(ch) <= 0xDFFF or ord(ch) in (0xFFFE, 0xFFFF) for ch in text
    )


def attr(text: str) -> str:
    """*text* for a single- or double-quoted attribute, read back exactly as *text*."""
    special = {"&": "&amp;", "<": "&lt;", "'": "&apos;", '"': "&quot;"}
    return "".join(special.get(ch) or (f"&#{ord(ch)};" if ch in "\t\n\r" else ch) for ch in text)


def canonical_ids(text: str) -> frozenset[int]:
    """libvirt's own canonical output (virBitmapFormat: ``"0-3,8"``) as a set of ids."""
    ids: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        ids.update(range(int(first), int(last or first) + 1))
    return frozenset(ids)


class Refused(Exception):
    """libvirt refused the definition or the call; the message is libvirt's."""


@dataclass(frozen=True)
class Element:
    """Where a cpuset string goes in a domain definition, and where libvirt writes it back."""

    name: str
    body: str  # the definition's tuning elements, with {} for the (escaped) string
    path: str  # where the canonical XML has the element

    @property
    def attribute(self) -> str:
        return "nodeset" if self.name == "numatune" else "cpuset"


ELEMENTS = (
    Element("vcpupin", "<cputune><vcpupin vcpu='0' cpuset='{}'/></cputune>", "cputune/vcpupin"),
    Element("emulatorpin", "<cputune><emulatorpin cpuset='{}'/></cputune>", "cputune/emulatorpin"),
    Element("numatune", "<numatune><memory nodeset='{}'/></numatune>", "numatune/memory"),
    Element("vcpu", "", "vcpu"),
)


class Oracle:
    """Ask libvirt's test driver how it reads a string or a domain document."""

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn = conn
        self._scratch: libvirt.virDomain | None = None

    def document(self, body: str, *, uuid: bool = True) -> str:
        """A whole test-driver domain around *body* (memory, vCPUs, tuning: the caller's).

        It has a fresh name and, unless *body* has one or *uuid* is false, a fresh <uuid>.
        """
        name = f"<name>oracle-{uuid_module.uuid4().hex[:12]}</name>"
        if uuid and "<uuid>" not in body:
            name += f"<uuid>{uuid_module.uuid4()}</uuid>"
        return f"<domain type='test'>{name}{body}<os><type>hvm</type></os></domain>"

    def define(self, xml: str) -> str:
        """libvirt's canonical rewrite of *xml* (the domain is undefined again); or Refused."""
        try:
            dom = self.conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise Refused(exc.get_error_message()) from None
        try:
            return dom.XMLDesc(INACTIVE)
        finally:
            dom.undefine()

    def element_reading(self, element: Element, text: str) -> frozenset[int]:
        """libvirt's reading of *text* as *element*'s cpuset/nodeset; Refused if refused."""
        value = attr(text)
        vcpu = f"<vcpu cpuset='{value}'>1</vcpu>" if element.name == "vcpu" else "<vcpu>1</vcpu>"
        body = "<memory>1024</memory>" + vcpu + element.body.format(value)
        found = ET.fromstring(self.define(self.document(body))).find(element.path)
        assert found is not None, f"libvirt dropped <{element.path}>"
        written = found.get(element.attribute)
        if written is None and element.name == "vcpu":
            return EVERY_ID
        assert written is not None
        return canonical_ids(written)

    def numa_parameters_text(self, text: str) -> str:
        """What libvirt writes back for nodeset *text* given to setNumaParameters; or Refused."""
        dom = self._scratch_domain()
        params = {libvirt.VIR_DOMAIN_NUMA_NODESET: text, libvirt.VIR_DOMAIN_NUMA_MODE: 0}
        try:
            dom.setNumaParameters(params, CONFIG)
        except libvirt.libvirtError as exc:
            raise Refused(exc.get_error_message()) from None
        return dom.numaParameters(CONFIG)[libvirt.VIR_DOMAIN_NUMA_NODESET]

    def numa_parameters_reading(self, text: str) -> frozenset[int]:
        """libvirt's reading of *text* as a nodeset given to setNumaParameters; or Refused."""
        return canonical_ids(self.numa_parameters_text(text))

    def _scratch_domain(self) -> libvirt.virDomain:
        if self._scratch is None:
            body = "<memory>1024</memory><vcpu>1</vcpu>"
            self._scratch = self.conn.defineXML(self.document(body))
        return self._scratch

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.undefine()
            self._scratch = None


def _ids(elem: ET.Element | None, name: str) -> frozenset[int] | None:
    value = None if elem is None else elem.get(name)
    return None if value is None else canonical_ids(value)


def _kib(elem: ET.Element | None) -> int | None:
    if elem is None:
        return None
    assert elem.get("unit") == "KiB", "libvirt writes every size in KiB"
    assert elem.text is not None
    return int(elem.text)


def _cell_kib(cell: ET.Element) -> int:
    assert cell.get("unit") == "KiB", "libvirt writes every size in KiB"
    return int(cell.get("memory", ""))


def domain_reading(canonical_xml: str) -> dict[str, Any]:
    """What libvirt's canonical XML says about the fields our DomainTuning has.

    Read with ElementTree and :func:`canonical_ids` only: this is libvirt's answer, spelled the
    way DomainTuning spells it, not another run of our parser.
    """
    root = ET.fromstring(canonical_xml)
    vcpu = root.find("vcpu")
    memory = root.find("numatune/memory")
    assert vcpu is not None and vcpu.text is not None
    return {
        "vcpu_max": int(vcpu.text),
        "vcpu_current": int(vcpu.get("current", vcpu.text)),
        "vcpu_placement": vcpu.get("placement"),
        "vcpu_cpuset": _ids(vcpu, "cpuset"),
        "vcpupin": {
            int(pin.get("vcpu", "")): canonical_ids(pin.get("cpuset", ""))
            for pin in root.findall("cputune/vcpupin")
        },
        "emulatorpin": _ids(root.find("cputune/emulatorpin"), "cpuset"),
        "numatune_mode": None if memory is None else memory.get("mode"),
        "numatune_nodeset": _ids(memory, "nodeset"),
        "numatune_placement": None if memory is None else memory.get("placement"),
        "numatune_memnodes": {
            int(node.get("cellid", "")): (node.get("mode"), _ids(node, "nodeset"))
            for node in root.findall("numatune/memnode")
        },
        "memory_kib": _kib(root.find("memory")),
        "current_memory_kib": _kib(root.find("currentMemory")),
        "guest_numa_cells": [
            (int(cell.get("id", "")), _ids(cell, "cpus") or frozenset(), _cell_kib(cell))
            for cell in root.findall("cpu/numa/cell")
        ],
    }


def tuning_reading(tuning: Any) -> dict[str, Any]:
    """The same fields of our :class:`~numaportal.virt.domain.DomainTuning`, spelled alike."""
    return {
        "vcpu_max": tuning.vcpu_max,
        "vcpu_current": tuning.vcpu_current,
        "vcpu_placement": tuning.vcpu_placement,
        "vcpu_cpuset": tuning.vcpu_cpuset,
        "vcpupin": tuning.vcpupin,
        "emulatorpin": tuning.emulatorpin,
        "numatune_mode": tuning.numatune_mode,
        "numatune_nodeset": tuning.numatune_nodeset,
        "numatune_placement": tuning.numatune_placement,
        "numatune_memnodes": {
            cell_id: (node.mode, node.nodeset) for cell_id, node in tuning.numatune_memnodes.items()
        },
        "memory_kib": tuning.memory_kib,
        "current_memory_kib": tuning.current_memory_kib,
        "guest_numa_cells": [(c.id, c.cpus, c.memory_kib) for c in tuning.guest_numa_cells],
    }
