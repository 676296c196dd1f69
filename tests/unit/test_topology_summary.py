"""lscpu / numactl -H summary, distance classes and the distance matrix, on every fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from hosts.topology_summary import (
    CellLine,
    distance_classes,
    distance_matrix,
    lscpu_summary,
)
from numaportal.virt.topology import Cell, Cpu, HostTopology, parse_capabilities

pytestmark = pytest.mark.unit

CAPS = Path(__file__).resolve().parent.parent / "fixtures" / "capabilities"


def load(name: str) -> HostTopology:
    return parse_capabilities((CAPS / name).read_text())


# name: (cpus, online, sockets, dies/socket, cores/socket, threads/core, cells)
EXPECTED = {
    "x86_64-1node-2cpu-lab.xml": (2, "0-1", 1, 1, 2, 1, ((0, "0-1", 5728460),)),
    "x86_64-1node-dies.xml": (12, "0-11", 2, 3, 6, 1, ((0, "0-11", 1048576),)),
    "x86_64-2node-24cpu-ht.xml": (
        24,
        "0-23",
        2,
        1,
        6,
        2,
        ((0, "0-5,12-17", 33554432), (1, "6-11,18-23", 33554432)),
    ),
    "x86_64-2node-64cpu-amd-smt.xml": (
        64,
        "0-63",
        2,
        4,
        16,
        2,
        ((0, "0-15,32-47", 1048576), (1, "16-31,48-63", 2097152)),
    ),
    "x86_64-4node-basic.xml": (
        16,
        "0-15",
        4,
        1,
        4,
        1,
        tuple((i, f"{4 * i}-{4 * i + 3}", (i + 1) * 1048576) for i in range(4)),
    ),
    "x86_64-2node-memory-only-cell.xml": (
        8,
        "0-7",
        1,
        1,
        4,
        2,
        ((0, "0-7", 16777216), (1, "", 67108864)),
    ),
}


def test_every_fixture_is_covered() -> None:
    assert {p.name for p in CAPS.glob("*.xml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lscpu_summary(name: str) -> None:
    cpus, online, sockets, dies, cores, threads, cells = EXPECTED[name]
    topology = load(name)
    summary = lscpu_summary(topology)
    assert summary.cpus == cpus
    assert summary.online == online
    assert (
        summary.sockets,
        summary.dies_per_socket,
        summary.cores_per_socket,
        summary.threads_per_core,
    ) == (sockets, dies, cores, threads)
    assert summary.cells == tuple(CellLine(*cell) for cell in cells)
    assert summary.numa_nodes == len(cells)
    assert summary.total_memory_kib == topology.total_memory_kib
    assert summary.arch == "x86_64"
    assert summary.from_declared is False
    # lscpu's identity: CPUs = sockets x cores/socket x threads/core on these symmetric hosts.
    assert sockets * cores * threads == cpus


def test_seed_host_summary_fields() -> None:
    summary = lscpu_summary(load("x86_64-2node-24cpu-ht.xml"))
    assert summary.cells[1] == (1, "6-11,18-23", 33554432)
    assert summary.cells[1].cpus == "6-11,18-23"
    assert summary.cpu_model is None


def test_model_and_vendor() -> None:
    summary = lscpu_summary(load("x86_64-2node-memory-only-cell.xml"))
    assert (summary.cpu_model, summary.vendor) == ("Icelake-Server", "Intel")
    lab = lscpu_summary(load("x86_64-1node-2cpu-lab.xml"))
    assert (lab.cpu_model, lab.vendor) == ("kvm64", "AMD")


def _host(cells: list[Cell], **declared: int | None) -> HostTopology:
    return HostTopology(
        cells=tuple(cells),
        arch="x86_64",
        cpu_model=None,
        cpu_vendor=None,
        declared_sockets=declared.get("sockets"),
        declared_dies=declared.get("dies"),
        declared_cores=declared.get("cores"),
        declared_threads=declared.get("threads"),
        uuid=None,
    )


def test_falls_back_to_declared_counts_when_cpus_lack_ids() -> None:
    bare = tuple(Cpu(i, None, None, None, frozenset({i}), 0) for i in range(4))
    topology = _host([Cell(0, 1024, bare, {}, {})], sockets=1, dies=1, cores=2, threads=2)
    summary = lscpu_summary(topology)
    assert summary.from_declared is True
    assert (summary.sockets, summary.cores_per_socket, summary.threads_per_core) == (1, 2, 2)
    assert summary.cpus == 4
    assert summary.online == ""
    assert summary.cells == ((0, "0-3", 1024),)


def test_offline_cpus_are_counted_but_not_online() -> None:
    cpus = (
        Cpu(0, 0, 0, 0, frozenset({0}), 0),
        Cpu(1, 0, 0, 1, frozenset({1}), 0),
        Cpu(2, None, None, None, frozenset({2}), 0),  # offline: libvirt gives no ids
    )
    summary = lscpu_summary(_host([Cell(0, 1024, cpus, {}, {})], sockets=4, cores=9))
    assert summary.cpus == 3
    assert summary.online == "0-1"
    assert (summary.sockets, summary.cores_per_socket) == (1, 2)  # ids beat declared
    assert summary.from_declared is False


def test_host_without_cells() -> None:
    summary = lscpu_summary(_host([]))
    assert (summary.cpus, summary.online, summary.numa_nodes, summary.cells) == (0, "", 0, ())
    assert summary.sockets is None
    assert distance_matrix(_host([])) == ((), ())


# --- distances ---------------------------------------------------------------------------------


def _four_nodes_with_distances() -> HostTopology:
    # A classic 4-socket ring: each node has two neighbours at 16 and one remote at 22.
    table = [
        [10, 16, 22, 16],
        [16, 10, 16, 22],
        [22, 16, 10, 16],
        [16, 22, 16, 10],
    ]
    cells = [
        Cell(
            i,
            1048576,
            tuple(Cpu(4 * i + j, i, 0, j, frozenset({4 * i + j}), i) for j in range(4)),
            dict(enumerate(row)),
            {},
        )
        for i, row in enumerate(table)
    ]
    return _host(cells)


def test_distance_classes_on_the_4node_fixture_without_distances() -> None:
    topology = load("x86_64-4node-basic.xml")
    assert distance_classes(topology, 2) == {
        0: "unknown",
        1: "unknown",
        2: "local",
        3: "unknown",
    }


def test_distance_classes_local_neighbour_remote() -> None:
    topology = _four_nodes_with_distances()
    assert distance_classes(topology, 0) == {
        0: "local",
        1: "neighbour",
        2: "remote",
        3: "neighbour",
    }
    assert distance_classes(topology, 1) == {
        0: "neighbour",
        1: "local",
        2: "neighbour",
        3: "remote",
    }


def test_distance_classes_on_the_24cpu_host() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    assert distance_classes(topology, 1) == {0: "neighbour", 1: "local"}
    assert distance_classes(topology, 0) == {0: "local", 1: "neighbour"}


def test_distance_classes_include_memory_only_cells() -> None:
    topology = load("x86_64-2node-memory-only-cell.xml")
    assert distance_classes(topology, 0) == {0: "local", 1: "neighbour"}
    assert distance_classes(topology, 1) == {0: "neighbour", 1: "local"}


def test_distance_classes_single_cell_and_bad_cell() -> None:
    topology = load("x86_64-1node-2cpu-lab.xml")
    assert distance_classes(topology, 0) == {0: "local"}
    with pytest.raises(KeyError, match="NUMA cell 7"):
        distance_classes(topology, 7)


def test_distance_classes_partial_distances() -> None:
    # A host that reports some distances but not to every cell: the missing one is unknown.
    topology = _four_nodes_with_distances()
    cells = list(topology.cells)
    cells[0] = Cell(0, 1, cells[0].cpus, {0: 10, 1: 21, 2: 31}, {})
    assert distance_classes(_host(cells), 0) == {
        0: "local",
        1: "neighbour",
        2: "remote",
        3: "unknown",
    }


def test_distance_matrix() -> None:
    ids, rows = distance_matrix(load("x86_64-2node-24cpu-ht.xml"))
    assert ids == (0, 1)
    assert rows == ((10, 21), (21, 10))
    ids, rows = distance_matrix(load("x86_64-2node-64cpu-amd-smt.xml"))
    assert rows == ((None, None), (None, None))
    ids, rows = distance_matrix(_four_nodes_with_distances())
    assert ids == (0, 1, 2, 3)
    assert rows[0] == (10, 16, 22, 16)
    assert all(rows[i][i] == 10 for i in ids)
