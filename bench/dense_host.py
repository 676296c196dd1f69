"""The issue's largest host, for the benchmarks: 448 threads in 8 cells plus 2 memory-only cells,
as a :class:`HostTopology` and as the ``virsh capabilities`` XML a sync would store.

Linux numbering: thread 0 of core c on socket s is s*28+c, its SMT sibling 224 + s*28 + c.
"""

from __future__ import annotations

from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import Cell, Cpu, HostTopology


def big_topology(sockets: int = 8, cores: int = 28, threads: int = 2) -> HostTopology:
    """448 threads in 8 cells plus 2 memory-only cells: the issue's largest host."""
    per_socket = cores * threads
    cells = []
    for s in range(sockets):
        cpus = tuple(
            Cpu(
                id=s * cores + c + t * sockets * cores,
                socket_id=s,
                die_id=0,
                core_id=c,
                siblings=frozenset(s * cores + c + k * sockets * cores for k in range(threads)),
                cell_id=s,
            )
            for c in range(cores)
            for t in range(threads)
        )
        cells.append(Cell(id=s, memory_kib=256 << 20, cpus=cpus, distances={}, pages={}))
    for extra in (sockets, sockets + 1):
        cells.append(Cell(id=extra, memory_kib=512 << 20, cpus=(), distances={}, pages={}))
    assert sum(len(c.cpus) for c in cells) == sockets * per_socket
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


def _distance(a: Cell, b: Cell) -> int:
    if a.id == b.id:
        return 10
    return 21 if bool(a.cpus) == bool(b.cpus) else 31


def capabilities_xml(topology: HostTopology) -> str:
    """*topology* as libvirt's capabilities XML (the parts ``parse_capabilities`` reads).

    Distances: 10 within a cell, 21 between two CPU cells or two memory-only cells, 31 across.
    """
    cells = []
    for cell in topology.cells:
        siblings = "".join(
            f"<sibling id='{other.id}' value='{_distance(cell, other)}'/>"
            for other in topology.cells
        )
        cpus = "".join(
            f"<cpu id='{cpu.id}' socket_id='{cpu.socket_id}' die_id='{cpu.die_id}'"
            f" core_id='{cpu.core_id}' siblings='{format_cpuset(cpu.siblings)}'/>"
            for cpu in cell.cpus
        )
        cells.append(
            f"<cell id='{cell.id}'><memory unit='KiB'>{cell.memory_kib}</memory>"
            f"<distances>{siblings}</distances><cpus num='{len(cell.cpus)}'>{cpus}</cpus></cell>"
        )
    return (
        "<capabilities><host><cpu>"
        f"<arch>{topology.arch}</arch><model>{topology.cpu_model or ''}</model>"
        f"<topology sockets='{topology.declared_sockets}' dies='{topology.declared_dies}'"
        f" cores='{topology.declared_cores}' threads='{topology.declared_threads}'/>"
        f"</cpu><topology><cells num='{len(cells)}'>{''.join(cells)}</cells></topology>"
        "</host></capabilities>"
    )
