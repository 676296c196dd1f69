"""Host NUMA topology from libvirt's capabilities XML (``virsh capabilities``).

The portal never assumes a topology: CPU ids per cell are not contiguous (a 2-socket Intel box
puts CPUs 6-11 *and* 18-23 on cell 1), SMT siblings can be far apart (``0,32`` on AMD), cells
can hold memory and no CPUs (CXL / memory-only nodes), socket ids can be sparse. Everything the
planner and the forms know about a host comes from :func:`parse_capabilities`.

The XML comes from hypervisors we connect to, so it is treated as untrusted input: a DOCTYPE
(the only door to entity expansion tricks) is refused, and every malformed or missing required
value raises :class:`TopologyError` with a message that says where.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from numaportal.virt.cpuset import CpusetError, format_cpuset, parse_cpuset
from numaportal.virt.memsize import memory_to_kib

__all__ = [
    "Cell",
    "Cpu",
    "HostTopology",
    "TopologyError",
    "fromstring_untrusted",
    "memory_to_kib",
    "parse_capabilities",
]


class TopologyError(ValueError):
    """Capabilities XML that cannot be turned into a :class:`HostTopology`."""


# --- shared helpers for untrusted libvirt XML (domain.py uses them too) ---------------------

# A DOCTYPE is how internal entities ("billion laughs") and external entities get in. libvirt
# never emits one, so refusing it costs nothing. Matched anywhere (even inside a comment):
# erring on the side of refusing is the point.
_DOCTYPE = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def fromstring_untrusted(xml: str, error: type[ValueError], what: str) -> ET.Element:
    """Parse XML from a host, raising *error* (never ``ParseError``) with a message naming *what*.

    ElementTree does not fetch external entities, but expat does expand internal ones; since
    libvirt XML never has a DOCTYPE we reject any document that has one.
    """
    if not isinstance(xml, str):
        raise error(f"{what} must be a str, not {type(xml).__name__}")
    if not xml.strip():
        raise error(f"{what} is empty")
    if _DOCTYPE.search(xml):
        raise error(f"{what} contains a DOCTYPE/ENTITY declaration; refusing to parse it")
    try:
        return ET.fromstring(xml)  # noqa: S314 - DOCTYPE refused above; no external fetches
    except ET.ParseError as exc:
        raise error(f"{what} is not well-formed XML: {exc}") from exc
    except ValueError as exc:  # e.g. an encoding declaration that contradicts a str
        raise error(f"{what} could not be parsed: {exc}") from exc


_DECIMAL = re.compile(r"[0-9]+", re.ASCII)


def _int(
    elem: ET.Element,
    attr: str,
    error: type[ValueError],
    where: str,
    *,
    required: bool = True,
) -> int | None:
    """Non-negative decimal attribute (or element text when *attr* is empty)."""
    raw = elem.text if attr == "" else elem.get(attr)
    label = f"<{elem.tag}> text" if attr == "" else f"attribute {attr!r} of <{elem.tag}>"
    if raw is None or not raw.strip():
        if required:
            raise error(f"{where}: missing {label}")
        return None
    raw = raw.strip()
    if not _DECIMAL.fullmatch(raw) or len(raw) > 20:
        raise error(f"{where}: {label} is {raw!r}, expected a non-negative integer")
    return int(raw)


def _memory_kib(elem: ET.Element, error: type[ValueError], where: str) -> int:
    value = _int(elem, "", error, where)
    assert value is not None
    try:
        return memory_to_kib(value, elem.get("unit"))
    except ValueError as exc:
        raise error(f"{where}: <{elem.tag}>: {exc}") from None


# --- parsed state -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cpu:
    """One logical CPU (a hardware thread) as ``<cpu id= socket_id= die_id= core_id= siblings=>``.

    ``siblings`` are the SMT threads sharing its core, itself included. Topology ids are None
    where libvirt omitted them (offline CPUs, old libvirt without dies).
    """

    id: int
    socket_id: int | None
    die_id: int | None
    core_id: int | None
    siblings: frozenset[int]
    cell_id: int


@dataclass(frozen=True, slots=True)
class Cell:
    """One host NUMA cell (``numactl -H`` "node"): its memory, CPUs, distances and free pages."""

    id: int
    memory_kib: int
    cpus: tuple[Cpu, ...]
    #: cell id -> distance (10 = local), empty when the XML has no <distances>.
    distances: dict[int, int]
    #: page size in KiB -> number of pages of that size on this cell.
    pages: dict[int, int]

    @property
    def cpu_ids(self) -> frozenset[int]:
        """This cell's CPU ids (empty for a memory-only cell)."""
        return frozenset(cpu.id for cpu in self.cpus)


CoreKey = tuple[int | None, int | None, int | None]


@dataclass(frozen=True, slots=True)
class HostTopology:
    """The NUMA/CPU layout of one host, as libvirt reports it."""

    cells: tuple[Cell, ...]
    arch: str
    cpu_model: str | None
    cpu_vendor: str | None
    #: What ``<host><cpu><topology sockets= dies= cores= threads=>`` declares. Informational:
    #: libvirt derives it from the first cell, so on multi-cell hosts it can disagree with the
    #: real per-CPU ids; placement uses ``cells``/``cores()``, never these.
    declared_sockets: int | None
    declared_dies: int | None
    declared_cores: int | None
    declared_threads: int | None
    uuid: str | None
    _cpus: dict[int, Cpu] = field(init=False, repr=False, compare=False)
    _cells: dict[int, Cell] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Lookups by id are the common operation (validate a form, map a pin to its cell), so
        # index once; CPU ids are sparse, so a dict, not a list.
        object.__setattr__(self, "_cells", {cell.id: cell for cell in self.cells})
        object.__setattr__(self, "_cpus", {cpu.id: cpu for cell in self.cells for cpu in cell.cpus})

    @property
    def cpu_ids(self) -> frozenset[int]:
        return frozenset(self._cpus)

    @property
    def cell_ids(self) -> frozenset[int]:
        return frozenset(self._cells)

    @property
    def sockets(self) -> tuple[int, ...]:
        """Distinct socket ids, sorted (CPUs without a socket id are left out)."""
        return tuple(sorted({c.socket_id for c in self._cpus.values() if c.socket_id is not None}))

    @property
    def total_memory_kib(self) -> int:
        return sum(cell.memory_kib for cell in self.cells)

    @property
    def threads_per_core(self) -> int:
        """Largest number of threads on one core (2 with SMT on, 1 off or with no CPUs at all)."""
        return max((len(threads) for threads in self.cores().values()), default=1)

    def cpu(self, cpu_id: int) -> Cpu:
        try:
            return self._cpus[cpu_id]
        except KeyError:
            raise KeyError(f"CPU {cpu_id} is not on this host ({self._describe_cpus()})") from None

    def cell(self, cell_id: int) -> Cell:
        try:
            return self._cells[cell_id]
        except KeyError:
            known = format_cpuset(self._cells) if self._cells else "none"
            raise KeyError(f"NUMA cell {cell_id} is not on this host (cells: {known})") from None

    def node_of(self, cpu_id: int) -> int:
        """The cell (NUMA node) holding *cpu_id*; KeyError naming the host's CPUs if absent."""
        return self.cpu(cpu_id).cell_id

    def cells_of(self, cpu_ids: Iterable[int]) -> frozenset[int]:
        """Cells spanned by a cpuset (a pin spanning two is what "remote memory" looks like)."""
        return frozenset(self.node_of(cpu_id) for cpu_id in cpu_ids)

    def distance(self, a: int, b: int) -> int | None:
        """NUMA distance from cell *a* to cell *b*; None when the XML has no distances.

        KeyError if either cell does not exist, so a typo is not mistaken for "unknown".
        """
        self.cell(b)
        return self.cell(a).distances.get(b)

    def cores(self) -> dict[CoreKey, tuple[int, ...]]:
        """Physical cores: ``(socket_id, die_id, core_id)`` -> sorted thread (CPU) ids.

        core_id is only unique within a socket and die, hence the triple. CPUs without a
        core_id (offline CPUs, which libvirt lists without topology) cannot be grouped and
        are left out.
        """
        groups: dict[CoreKey, list[int]] = {}
        for cpu in sorted(self._cpus.values(), key=lambda c: c.id):
            if cpu.core_id is None:
                continue
            groups.setdefault((cpu.socket_id, cpu.die_id, cpu.core_id), []).append(cpu.id)
        return {key: tuple(ids) for key, ids in groups.items()}

    def _describe_cpus(self) -> str:
        if not self._cpus:
            return "it has no CPUs in its NUMA topology"
        return f"it has {len(self._cpus)} CPUs: {format_cpuset(self._cpus)}"


# --- parsing ----------------------------------------------------------------------------------


def _text(elem: ET.Element | None) -> str | None:
    if elem is None or elem.text is None or not elem.text.strip():
        return None
    return elem.text.strip()


def _parse_cpu(elem: ET.Element, cell_id: int, where: str) -> Cpu:
    cpu_id = _int(elem, "id", TopologyError, where)
    assert cpu_id is not None
    where = f"{where}, CPU {cpu_id}"
    siblings_text = elem.get("siblings")
    if siblings_text is None:
        siblings = frozenset({cpu_id})
    else:
        try:
            siblings = parse_cpuset(siblings_text)
        except CpusetError as exc:
            raise TopologyError(f"{where}: bad siblings: {exc}") from None
    return Cpu(
        id=cpu_id,
        socket_id=_int(elem, "socket_id", TopologyError, where, required=False),
        die_id=_int(elem, "die_id", TopologyError, where, required=False),
        core_id=_int(elem, "core_id", TopologyError, where, required=False),
        # libvirt always includes the CPU itself; make sure even if a hand-written XML doesn't.
        siblings=siblings | {cpu_id},
        cell_id=cell_id,
    )


def _parse_cell(elem: ET.Element) -> Cell:
    cell_id = _int(elem, "id", TopologyError, "<cell>")
    assert cell_id is not None
    where = f"cell {cell_id}"

    # libvirt writes <memory> only when it knows the cell's size; absent means 0, not an error.
    memory = elem.find("memory")
    memory_kib = 0 if memory is None else _memory_kib(memory, TopologyError, where)

    pages: dict[int, int] = {}
    for page in elem.findall("pages"):
        size = _int(page, "size", TopologyError, f"{where}, <pages>")
        count = _int(page, "", TopologyError, f"{where}, <pages>")
        assert size is not None and count is not None
        try:
            size_kib = memory_to_kib(size, page.get("unit"))
        except ValueError as exc:
            raise TopologyError(f"{where}, <pages>: {exc}") from None
        pages[size_kib] = count

    distances: dict[int, int] = {}
    for sibling in elem.findall("distances/sibling"):
        other = _int(sibling, "id", TopologyError, f"{where}, <distances>")
        value = _int(sibling, "value", TopologyError, f"{where}, <distances>")
        assert other is not None and value is not None
        distances[other] = value

    cpus = [_parse_cpu(cpu, cell_id, where) for cpu in elem.findall("cpus/cpu")]
    cpus.sort(key=lambda c: c.id)
    return Cell(
        id=cell_id, memory_kib=memory_kib, cpus=tuple(cpus), distances=distances, pages=pages
    )


def parse_capabilities(xml: str) -> HostTopology:
    """Parse ``virsh capabilities`` / ``conn.getCapabilities()`` into a :class:`HostTopology`.

    A host without ``<topology><cells>`` (libvirt's test driver with a custom host file) has
    zero cells rather than being an error: the portal shows "no NUMA topology reported".
    """
    root = fromstring_untrusted(xml, TopologyError, "capabilities XML")
    if root.tag != "capabilities":
        raise TopologyError(f"capabilities XML: root element is <{root.tag}>, not <capabilities>")
    host = root.find("host")
    if host is None:
        raise TopologyError("capabilities XML: missing <host>")
    arch = _text(host.find("cpu/arch"))
    if arch is None:
        raise TopologyError("capabilities XML: missing <host><cpu><arch>")

    cells = [_parse_cell(cell) for cell in host.findall("topology/cells/cell")]
    cells.sort(key=lambda c: c.id)
    seen_cells: set[int] = set()
    seen_cpus: dict[int, int] = {}
    for cell in cells:
        if cell.id in seen_cells:
            raise TopologyError(f"capabilities XML: cell {cell.id} appears twice")
        seen_cells.add(cell.id)
        for cpu in cell.cpus:
            if cpu.id in seen_cpus:
                raise TopologyError(
                    f"capabilities XML: CPU {cpu.id} is listed in cell {seen_cpus[cpu.id]} "
                    f"and in cell {cell.id}"
                )
            seen_cpus[cpu.id] = cell.id

    declared = host.find("cpu/topology")
    where = "capabilities XML, <host><cpu><topology>"

    def declared_int(attr: str) -> int | None:
        if declared is None:
            return None
        return _int(declared, attr, TopologyError, where, required=False)

    return HostTopology(
        cells=tuple(cells),
        arch=arch,
        cpu_model=_text(host.find("cpu/model")),
        cpu_vendor=_text(host.find("cpu/vendor")),
        declared_sockets=declared_int("sockets"),
        declared_dies=declared_int("dies"),
        declared_cores=declared_int("cores"),
        declared_threads=declared_int("threads"),
        uuid=_text(host.find("uuid")),
    )
