"""Hosts for the planner benchmark: generated ones shaped like real machines (sockets, SNC /
NPS cells, CXL memory-only cells, ring distances) and the capabilities fixtures of the tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from numaportal.virt.topology import Cell, Cpu, HostTopology, parse_capabilities

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "capabilities"


def socket_distance(a: int, b: int, sockets: int, ring: bool) -> int:
    """21 to a neighbouring socket, 32 two or more hops away on a ring (glueless 4/8 sockets)."""
    hops = min(abs(a - b), sockets - abs(a - b)) if ring else 1
    return 21 if hops <= 1 else 32


def generated_host(
    *,
    sockets: int,
    cells_per_socket: int = 1,
    cores: int = 16,
    threads: int = 2,
    memory_only: int = 0,
    ring: bool = True,
) -> HostTopology:
    """A host shaped like a real machine: *sockets* x *cells_per_socket* CPU cells of *cores*
    cores x *threads* threads, Linux numbering (thread t of core g is CPU g + t x all cores),
    distances 10 local / 16 same socket (SNC, NPS) / 21 next socket / 32 two hops; plus
    *memory_only* CPU-less cells (CXL), one behind each socket in turn (21 from it, 32 from
    the others). Memory is 0 here: :func:`with_memory` sets it once the VMs are known."""
    cpu_cells = sockets * cells_per_socket
    all_cores = cpu_cells * cores
    socket_of = {c: c // cells_per_socket for c in range(cpu_cells)}
    socket_of.update({cpu_cells + i: i % sockets for i in range(memory_only)})
    n_cells = cpu_cells + memory_only

    def dist(a: int, b: int) -> int:
        if a == b:
            return 10
        if a < cpu_cells and b < cpu_cells and socket_of[a] == socket_of[b]:
            return 16
        if a >= cpu_cells and b >= cpu_cells:
            return 32
        if (a >= cpu_cells or b >= cpu_cells) and socket_of[a] == socket_of[b]:
            return 21
        if a >= cpu_cells or b >= cpu_cells:
            return 32
        return socket_distance(socket_of[a], socket_of[b], sockets, ring)

    cells = []
    for c in range(n_cells):
        cpus: list[Cpu] = []
        if c < cpu_cells:
            for k in range(cores):
                g = c * cores + k
                siblings = frozenset(g + t * all_cores for t in range(threads))
                core_in_socket = (c % cells_per_socket) * cores + k
                cpus.extend(
                    Cpu(
                        id=g + t * all_cores,
                        socket_id=socket_of[c],
                        die_id=0,
                        core_id=core_in_socket,
                        siblings=siblings,
                        cell_id=c,
                    )
                    for t in range(threads)
                )
        cpus.sort(key=lambda cpu: cpu.id)
        cells.append(
            Cell(
                id=c,
                memory_kib=0,
                cpus=tuple(cpus),
                distances={o: dist(c, o) for o in range(n_cells)},
                pages={},
            )
        )
    return HostTopology(
        cells=tuple(cells),
        arch="x86_64",
        cpu_model="bench",
        cpu_vendor=None,
        declared_sockets=sockets,
        declared_dies=1,
        declared_cores=cores,
        declared_threads=threads,
        uuid=None,
    )


def with_memory(topology: HostTopology, memory_kib: Mapping[int, int]) -> HostTopology:
    cells = tuple(replace(cell, memory_kib=memory_kib[cell.id]) for cell in topology.cells)
    return replace(topology, cells=cells)


def fixture_host(name: str) -> HostTopology:
    return parse_capabilities((FIXTURES / name).read_text())
