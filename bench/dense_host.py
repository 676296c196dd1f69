"""The issue's largest host, for the benchmarks: 448 threads in 8 cells plus 2 memory-only cells,
as a :class:`HostTopology` and as the ``virsh capabilities`` XML a sync would store.

Linux numbering: thread 0 of core c on socket s is s*28+c, its SMT sibling 224 + s*28 + c.
"""

from __future__ import annotations

from bench.planner_bench.hosts import generated_host, with_memory
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import HostTopology


def big_topology(sockets: int = 8, cores: int = 28, threads: int = 2) -> HostTopology:
    """448 threads in 8 cells of 256 GiB plus 2 memory-only cells of 512 GiB (CXL)."""
    topology = generated_host(sockets=sockets, cores=cores, threads=threads, memory_only=2)
    memory = {cell.id: (256 << 20) if cell.cpus else (512 << 20) for cell in topology.cells}
    return with_memory(topology, memory)


def capabilities_xml(topology: HostTopology) -> str:
    """*topology* as libvirt's capabilities XML (the parts ``parse_capabilities`` reads)."""
    cells = []
    for cell in topology.cells:
        siblings = "".join(
            f"<sibling id='{other}' value='{value}'/>"
            for other, value in sorted(cell.distances.items())
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
