"""A cell's ``<summary>`` line, readable on its own when the cell is collapsed: CPU list,
memory used / free bar, pinned vCPUs, over-committed CPUs, floating VMs, memory bound here.
"""

from __future__ import annotations

from collections.abc import Mapping

from hosts.diagram.marks import CpuMarks
from hosts.diagram.markup import attrs, esc, plural, size_text
from hosts.diagram.model import CellMemory, DiagramVm
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import Cell


def _memory_bar(memory: CellMemory) -> str:
    width, height = 140, 10
    if memory.total_kib <= 0:
        used_w, tip = 0.0, "no memory"
    elif memory.free_kib is None:
        used_w, tip = 0.0, f"{size_text(memory.total_kib)}, free unknown"
    else:
        used = max(memory.total_kib - memory.free_kib, 0)
        used_w = width * min(used / memory.total_kib, 1.0)
        tip = (
            f"{size_text(used)} used, {size_text(memory.free_kib)} free of"
            f" {size_text(memory.total_kib)}"
        )
    colour = "#c58a1b" if used_w > 0.9 * width else "#2f6db5"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="membar" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"{attrs(aria_label=tip)}>'
        f"<title>{esc(tip)}</title>"
        f'<rect width="{width}" height="{height}" rx="2" fill="#e2e6ec"'
        ' stroke="#aab4c4" stroke-width="0.8"/>'
        f'<rect class="used" width="{used_w:.1f}" height="{height}" rx="2" fill="{colour}"/>'
        "</svg>"
    )


def _memory_text(memory: CellMemory) -> str:
    if memory.free_kib is None:
        return f"{size_text(memory.total_kib)} (free unknown)"
    used = max(memory.total_kib - memory.free_kib, 0)
    return (
        f"{size_text(used)} used, {size_text(memory.free_kib)} free of"
        f" {size_text(memory.total_kib)}"
    )


def cell_summary(
    cell: Cell,
    memory: CellMemory,
    marks: Mapping[int, CpuMarks],
    vms: list[DiagramVm],
) -> str:
    """The ``<summary>`` content of *cell*'s ``<details>``; *vms* for memory bound here."""
    cpus = format_cpuset(cell.cpu_ids) if cell.cpus else "no CPUs (memory-only)"
    cell_marks = [marks[cpu.id] for cpu in cell.cpus]
    pinned = {(r.vm.uuid, r.vcpu) for m in cell_marks for r in m.pinned}
    over = sum(1 for m in cell_marks if m.overcommitted)
    floating = {vm.uuid for m in cell_marks for vm in m.floating}
    bound = [vm.name for vm in vms if cell.id in vm.memory_cells]
    parts = [
        f'<span class="cell-name">node {cell.id}</span>',
        f'<span class="cell-cpus">{"CPUs " if cell.cpus else ""}{esc(cpus)}</span>',
    ]
    if cell.cpus:
        parts.append(f'<span class="cell-threads">{plural(len(cell.cpus), "thread")}</span>')
    parts.append(f'<span class="cell-mem">{_memory_bar(memory)} {esc(_memory_text(memory))}</span>')
    if cell.cpus:
        parts.append(f'<span class="cell-pins">{plural(len(pinned), "pinned vCPU")}</span>')
    if over:
        parts.append(f'<span class="cell-over">{plural(over, "over-committed CPU")}</span>')
    if floating:
        parts.append(f'<span class="cell-float">{plural(len(floating), "VM")} may float</span>')
    if bound:
        parts.append(
            f'<span class="cell-bound"{attrs(title=", ".join(bound))}>'
            f"memory of {plural(len(bound), 'VM')} bound here</span>"
        )
    return " ".join(parts)
