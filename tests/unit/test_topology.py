"""Capabilities XML -> HostTopology, on every fixture host and on broken input."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.topology import (
    Cell,
    Cpu,
    HostTopology,
    TopologyError,
    memory_to_kib,
    parse_capabilities,
)

pytestmark = pytest.mark.unit

CAPS = Path(__file__).resolve().parent.parent / "fixtures" / "capabilities"


def load(name: str) -> HostTopology:
    return parse_capabilities((CAPS / name).read_text())


def test_every_fixture_parses_and_pickles() -> None:
    # Celery ships these between processes; they must survive pickling unchanged.
    files = sorted(CAPS.glob("*.xml"))
    assert len(files) >= 6
    for path in files:
        topology = parse_capabilities(path.read_text())
        assert pickle.loads(pickle.dumps(topology)) == topology
        assert topology.arch == "x86_64"
        # Every CPU's cell agrees with the cell listing it, and siblings include the CPU.
        for cell in topology.cells:
            for cpu in cell.cpus:
                assert cpu.cell_id == cell.id
                assert cpu.id in cpu.siblings
                assert topology.node_of(cpu.id) == cell.id


# name, cells, cpus per cell, sockets, threads_per_core, number of cores, total memory KiB
SHAPES = [
    ("x86_64-1node-2cpu-lab.xml", (2,), (0,), 1, 2, 5728460),
    ("x86_64-1node-dies.xml", (12,), (0, 1), 1, 12, 1048576),
    ("x86_64-2node-24cpu-ht.xml", (12, 12), (0, 1), 2, 12, 2 * 33554432),
    ("x86_64-2node-64cpu-amd-smt.xml", (32, 32), (0, 1), 2, 32, 1048576 + 2097152),
    ("x86_64-4node-basic.xml", (4, 4, 4, 4), (0, 1, 2, 3), 1, 16, 10 * 1048576),
    ("x86_64-2node-memory-only-cell.xml", (8, 0), (0,), 2, 4, 16777216 + 65536 * 1024),
]


@pytest.mark.parametrize(("name", "cpus_per_cell", "sockets", "threads", "cores", "memory"), SHAPES)
def test_fixture_shapes(
    name: str,
    cpus_per_cell: tuple[int, ...],
    sockets: tuple[int, ...],
    threads: int,
    cores: int,
    memory: int,
) -> None:
    topology = load(name)
    assert tuple(len(cell.cpus) for cell in topology.cells) == cpus_per_cell
    assert tuple(cell.id for cell in topology.cells) == tuple(range(len(cpus_per_cell)))
    assert topology.cell_ids == frozenset(range(len(cpus_per_cell)))
    assert len(topology.cpu_ids) == sum(cpus_per_cell)
    assert topology.sockets == sockets
    assert topology.threads_per_core == threads
    assert len(topology.cores()) == cores
    assert topology.total_memory_kib == memory


def test_lab_host_is_this_machine() -> None:
    topology = load("x86_64-1node-2cpu-lab.xml")
    assert topology.uuid == "795ba777-91d8-4d11-8437-e3ae55dafa30"
    assert topology.cpu_model == "kvm64"
    assert topology.cpu_vendor == "AMD"
    assert (
        topology.declared_sockets,
        topology.declared_dies,
        topology.declared_cores,
        topology.declared_threads,
    ) == (1, 1, 2, 1)
    (cell,) = topology.cells
    assert cell.memory_kib == 5728460
    assert cell.pages == {4: 1432115, 2048: 0, 1048576: 0}
    assert cell.distances == {0: 10}
    assert cell.cpu_ids == frozenset({0, 1})
    assert topology.cpu(1) == Cpu(
        id=1, socket_id=0, die_id=0, core_id=1, siblings=frozenset({1}), cell_id=0
    )
    assert topology.distance(0, 0) == 10


def test_seed_shaped_24cpu_host() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    assert topology.cell(1).cpu_ids == frozenset([*range(6, 12), *range(18, 24)])
    assert topology.cell(0).cpu_ids == frozenset([*range(0, 6), *range(12, 18)])
    # The seed pins the emulator to 18-23 and vCPUs to 22 and 23: all on cell 1.
    assert topology.cells_of(parse_cpuset("18-23")) == frozenset({1})
    assert topology.cells_of(parse_cpuset("5-6")) == frozenset({0, 1})
    for cpu_id, node in [(0, 0), (5, 0), (6, 1), (11, 1), (12, 0), (17, 0), (18, 1), (23, 1)]:
        assert topology.node_of(cpu_id) == node
    assert topology.cpu(22).siblings == frozenset({10, 22})
    assert topology.cpu(10).siblings == frozenset({10, 22})
    assert topology.distance(0, 1) == 21
    assert topology.distance(1, 0) == 21
    assert topology.distance(1, 1) == 10
    assert topology.cell(0).pages == {4: 8388608, 2048: 0}
    assert (topology.declared_sockets, topology.declared_cores, topology.declared_threads) == (
        2,
        6,
        2,
    )
    assert topology.declared_dies == 1
    assert topology.uuid is None
    assert topology.cpu_model is None
    cores = topology.cores()
    assert cores[(1, 0, 4)] == (10, 22)
    assert cores[(0, 0, 0)] == (0, 12)
    assert all(len(threads) == 2 for threads in cores.values())


def test_amd_smt_siblings_far_apart() -> None:
    topology = load("x86_64-2node-64cpu-amd-smt.xml")
    assert topology.cpu(0).siblings == frozenset({0, 32})
    assert topology.cpu(32).siblings == frozenset({0, 32})
    assert topology.cpu(63).siblings == frozenset({31, 63})
    assert topology.cell(0).cpu_ids == frozenset([*range(0, 16), *range(32, 48)])
    assert topology.cell(1).cpu_ids == frozenset([*range(16, 32), *range(48, 64)])
    assert topology.node_of(40) == 0
    assert topology.node_of(48) == 1
    # Dies: CPU 4 is on die 2, core 16 (core ids are not dense either).
    cpu4 = topology.cpu(4)
    assert (cpu4.socket_id, cpu4.die_id, cpu4.core_id) == (0, 2, 16)
    assert topology.cores()[(0, 2, 16)] == (4, 36)
    # No <distances> in this XML: empty dict, distance unknown rather than invented.
    assert topology.cell(0).distances == {}
    assert topology.distance(0, 1) is None
    assert topology.cell(1).memory_kib == 2097152
    assert topology.cell(1).pages == {4: 4096, 2048: 6144, 1048576: 8192}


def test_dies_fixture() -> None:
    topology = load("x86_64-1node-dies.xml")
    cores = topology.cores()
    # core_id repeats across dies and sockets; the (socket, die, core) key keeps them apart.
    assert cores[(0, 0, 0)] == (0,)
    assert cores[(0, 1, 0)] == (2,)
    assert cores[(1, 2, 1)] == (11,)
    assert {cpu.die_id for cpu in topology.cells[0].cpus} == {0, 1, 2}
    assert topology.declared_sockets is None
    assert topology.distance(0, 0) is None


def test_four_node_fixture() -> None:
    topology = load("x86_64-4node-basic.xml")
    assert [cell.memory_kib for cell in topology.cells] == [1048576, 2097152, 3145728, 4194304]
    assert topology.cell(3).cpu_ids == frozenset({12, 13, 14, 15})
    assert topology.node_of(9) == 2
    assert topology.cell(2).pages == {4: 6144, 2048: 8192, 1048576: 10240}


def test_memory_only_cell() -> None:
    topology = load("x86_64-2node-memory-only-cell.xml")
    cpuless = topology.cell(1)
    assert cpuless.cpus == ()
    assert cpuless.cpu_ids == frozenset()
    assert cpuless.memory_kib == 64 * 1024 * 1024  # given as 65536 MiB
    assert cpuless.pages == {4: 16777216, 2048: 0}  # size='2' unit='MiB' -> 2048 KiB
    assert topology.distance(0, 1) == 24
    assert topology.cells_of(topology.cpu_ids) == frozenset({0})
    assert topology.cpu_vendor == "Intel"
    assert topology.cpu_model == "Icelake-Server"
    assert topology.cores()[(0, 0, 2)] == (2, 6)


def test_lookup_errors_are_clear() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    with pytest.raises(KeyError, match=r"CPU 99 is not on this host \(it has 24 CPUs: 0-23\)"):
        topology.node_of(99)
    with pytest.raises(KeyError, match="CPU 24 is not on this host"):
        topology.cpu(24)
    with pytest.raises(KeyError, match=r"NUMA cell 2 is not on this host \(cells: 0-1\)"):
        topology.cell(2)
    with pytest.raises(KeyError, match="NUMA cell 5"):
        topology.distance(0, 5)


ZERO_CELLS = """<capabilities>
  <host>
    <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
    <cpu><arch>i686</arch></cpu>
    <power_management/>
  </host>
</capabilities>"""


def test_zero_cells_is_not_an_error() -> None:
    topology = parse_capabilities(ZERO_CELLS)
    assert topology.cells == ()
    assert topology.cpu_ids == frozenset()
    assert topology.sockets == ()
    assert topology.cores() == {}
    assert topology.threads_per_core == 1
    assert topology.total_memory_kib == 0
    assert topology.arch == "i686"
    with pytest.raises(KeyError, match="it has no CPUs in its NUMA topology"):
        topology.node_of(0)
    with pytest.raises(KeyError, match=r"cells: none"):
        topology.cell(0)


def test_empty_topology_element_gives_zero_cells() -> None:
    xml = "<capabilities><host><cpu><arch>x86_64</arch></cpu><topology/></host></capabilities>"
    assert parse_capabilities(xml).cells == ()


def test_sparse_ids_missing_attributes_and_units() -> None:
    # Offline CPU 5 listed without topology attributes (as libvirt does), sparse socket ids,
    # memory in GiB, no <memory> at all on cell 7 (libvirt omits it when unknown), an XML
    # declaration, and a cell without <cpus>.
    xml = """<?xml version='1.0' encoding='UTF-8'?>
<capabilities><host><cpu><arch>aarch64</arch></cpu>
  <topology><cells num='3'>
    <cell id='7'>
      <cpus num='2'>
        <cpu id='4' socket_id='36' core_id='0'/>
        <cpu id='5'/>
      </cpus>
    </cell>
    <cell id='2'><memory unit='GiB'>2</memory><cpus num='1'>
      <cpu id='9' socket_id='4' core_id='3' siblings='9'/></cpus></cell>
    <cell id='3'><memory unit='bytes'>1048576</memory></cell>
  </cells></topology>
</host></capabilities>"""
    topology = parse_capabilities(xml)
    assert [cell.id for cell in topology.cells] == [2, 3, 7]
    assert topology.cell(2).memory_kib == 2 * 1024 * 1024
    assert topology.cell(3).memory_kib == 1024
    assert topology.cell(3).cpus == ()
    assert topology.cell(7).memory_kib == 0
    assert topology.cpu(5) == Cpu(
        id=5, socket_id=None, die_id=None, core_id=None, siblings=frozenset({5}), cell_id=7
    )
    assert topology.cpu(4).die_id is None
    assert topology.sockets == (4, 36)
    # CPU 5 has no core_id: it cannot be grouped into a core and is left out.
    assert topology.cores() == {(4, None, 3): (9,), (36, None, 0): (4,)}
    assert topology.node_of(5) == 7


@pytest.mark.parametrize(
    ("value", "unit", "kib"),
    [
        (4, None, 4),
        (4, "KiB", 4),
        (4, "k", 4),
        (2, "MiB", 2048),
        (2, "M", 2048),
        (1, "GiB", 1024 * 1024),
        (1, "TiB", 1024**3),
        (2048, "b", 2),
        (2048, "bytes", 2),
        (1000, "bytes", 1),  # a partial KiB rounds up, as libvirt rounds it
        (1, "KB", 1),  # 1000 bytes
        (1024, "KB", 1000),
        (1, "MB", 977),
    ],
)
def test_memory_to_kib(value: int, unit: str | None, kib: int) -> None:
    assert memory_to_kib(value, unit) == kib


def test_memory_to_kib_unknown_unit() -> None:
    with pytest.raises(ValueError, match="unknown memory unit 'parsecs'"):
        memory_to_kib(1, "parsecs")


def _caps(cell_body: str, cell_attrs: str = "id='0'") -> str:
    return (
        "<capabilities><host><cpu><arch>x86_64</arch></cpu><topology><cells num='1'>"
        f"<cell {cell_attrs}>{cell_body}</cell></cells></topology></host></capabilities>"
    )


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("", "capabilities XML is empty"),
        ("<capabilities><host>", "capabilities XML is not well-formed XML"),
        ("not xml at all", "not well-formed"),
        ("<domain type='kvm'/>", "root element is <domain>, not <capabilities>"),
        ("<capabilities/>", "missing <host>"),
        ("<capabilities><host/></capabilities>", "missing <host><cpu><arch>"),
        (_caps("", cell_attrs=""), "<cell>: missing attribute 'id' of <cell>"),
        (_caps("", cell_attrs="id='x'"), "attribute 'id' of <cell> is 'x'"),
        (_caps("<cpus><cpu socket_id='0'/></cpus>"), "cell 0: missing attribute 'id' of <cpu>"),
        (_caps("<cpus><cpu id='-1'/></cpus>"), "attribute 'id' of <cpu> is '-1'"),
        (_caps("<cpus><cpu id='1' siblings='1-'/></cpus>"), "cell 0, CPU 1: bad siblings"),
        (_caps("<cpus><cpu id='1' core_id='one'/></cpus>"), "attribute 'core_id' of <cpu>"),
        (_caps("<memory unit='furlongs'>3</memory>"), "unknown memory unit 'furlongs'"),
        (_caps("<memory unit='KiB'>lots</memory>"), "<memory> text is 'lots'"),
        (_caps("<memory unit='KiB'></memory>"), "missing <memory> text"),
        (_caps("<pages unit='KiB'>3</pages>"), "missing attribute 'size' of <pages>"),
        (_caps("<distances><sibling id='0'/></distances>"), "missing attribute 'value'"),
        (
            "<capabilities><host><cpu><arch>x</arch></cpu><topology><cells>"
            "<cell id='0'/><cell id='0'/></cells></topology></host></capabilities>",
            "cell 0 appears twice",
        ),
        (
            "<capabilities><host><cpu><arch>x</arch></cpu><topology><cells>"
            "<cell id='0'><cpus><cpu id='3'/></cpus></cell>"
            "<cell id='1'><cpus><cpu id='3'/></cpus></cell></cells></topology></host>"
            "</capabilities>",
            "CPU 3 is listed in cell 0 and in cell 1",
        ),
        (
            "<capabilities><host><cpu><arch>x</arch><topology sockets='two'/></cpu></host>"
            "</capabilities>",
            "attribute 'sockets' of <topology> is 'two'",
        ),
    ],
)
def test_malformed_capabilities(xml: str, message: str) -> None:
    with pytest.raises(TopologyError) as excinfo:
        parse_capabilities(xml)
    assert message in str(excinfo.value)


def test_non_str_is_rejected() -> None:
    with pytest.raises(TopologyError, match="must be a str, not bytes"):
        parse_capabilities(b"<capabilities/>")  # type: ignore[arg-type]


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<capabilities><host><cpu><arch>&lol3;</arch></cpu></host></capabilities>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE capabilities [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<capabilities><host><uuid>&xxe;</uuid><cpu><arch>x86_64</arch></cpu></host></capabilities>"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL_ENTITY, "<!doctype x><x/>"])
def test_doctype_is_refused(xml: str) -> None:
    with pytest.raises(TopologyError, match="DOCTYPE/ENTITY declaration; refusing"):
        parse_capabilities(xml)


def test_dataclasses_are_frozen() -> None:
    topology = load("x86_64-1node-2cpu-lab.xml")
    with pytest.raises(AttributeError):
        topology.arch = "aarch64"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        topology.cells[0].id = 3  # type: ignore[misc]
    assert isinstance(topology.cells[0], Cell)


@pytest.mark.parametrize(
    ("value", "unit", "kib"),
    [
        # libvirt's virScaleInteger units and virDomainParseMemory's rounding up (VIR_DIV_UP);
        # tests/libvirt/test_oracle_domain.py checks every unit against libvirt itself
        (1, "byte", 1),
        (1, "b", 1),
        (1025, "bytes", 2),
        (1, "KB", 1),
        (1, "MB", 977),
        (1, "GB", 976563),
        (3, "kiB", 3),
        (1, "E", 1024**5),
        (1, "", 1),  # an empty unit is the default, KiB
        (2**53 - 1, "KiB", 2**53 - 1),
    ],
)
def test_memory_to_kib_as_libvirt(value: int, unit: str, kib: int) -> None:
    assert memory_to_kib(value, unit) == kib


@pytest.mark.parametrize(
    ("value", "unit"),
    [(1, " KiB"), (1, "KiB "), (1, "Z"), (1, "\u212aiB"), (2**53, "KiB"), (8, "EiB"), (10, "EB")],
)
def test_memory_to_kib_refuses_as_libvirt(value: int, unit: str) -> None:
    with pytest.raises(ValueError, match=r"unknown memory unit|too large"):
        memory_to_kib(value, unit)
