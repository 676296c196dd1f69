"""The whole diagram fragment: toolbar, legend, then one ``<details>`` per NUMA cell."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from hosts.diagram.cell_summary import cell_summary
from hosts.diagram.cell_svg import cell_svg
from hosts.diagram.legend import legend
from hosts.diagram.marks import cpu_marks, vm_order
from hosts.diagram.markup import attrs
from hosts.diagram.model import CellMemory, DiagramVm
from numaportal.virt.topology import HostTopology


def _memory_map(
    topology: HostTopology,
    cell_memory: Mapping[int, CellMemory] | Iterable[CellMemory] | None,
) -> dict[int, CellMemory]:
    given: dict[int, CellMemory] = {}
    if isinstance(cell_memory, Mapping):
        given = dict(cell_memory)
    elif cell_memory is not None:
        given = {m.cell_id: m for m in cell_memory}
    return {
        cell.id: given.get(cell.id, CellMemory(cell.id, cell.memory_kib, None))
        for cell in topology.cells
    }


def render_topology_svg(
    topology: HostTopology,
    vms: Iterable[DiagramVm],
    cell_memory: Mapping[int, CellMemory] | Iterable[CellMemory] | None = None,
    *,
    collapse_threshold: int = 128,
    id_prefix: str = "numa",
) -> str:
    """The host's topology diagram as an HTML fragment (legend + one ``<details>`` per cell).

    *cell_memory* is keyed by cell id (or an iterable of :class:`CellMemory`); a cell missing
    from it shows the topology's total with free unknown. Cells with more than
    *collapse_threshold* threads, and every cell of a host with more than four cells, are
    collapsed. *id_prefix* keeps SVG pattern ids unique if two diagrams share a page.
    Safe to include with ``|safe``: everything from outside is escaped.
    """
    vm_list = sorted(vms, key=vm_order)
    prefix = re.sub(r"[^A-Za-z0-9_-]", "", id_prefix) or "numa"
    marks = cpu_marks(topology, vm_list)
    memory = _memory_map(topology, cell_memory)
    many_cells = len(topology.cells) > 4

    out = [
        f"<div{attrs(class_='numa-diagram', data_cells=len(topology.cells))}"
        f"{attrs(data_cpus=len(topology.cpu_ids))}>",
        '<div class="numa-toolbar" hidden="">'
        '<button type="button" data-action="zoom-out" title="Zoom out">\u2212</button>'
        '<button type="button" data-action="zoom-fit" title="Fit to width">fit</button>'
        '<button type="button" data-action="zoom-in" title="Zoom in">+</button>'
        '<button type="button" data-action="expand">expand all</button>'
        '<button type="button" data-action="collapse">collapse all</button></div>',
        legend(vm_list, prefix),
    ]
    if not topology.cells:
        out.append('<p class="numa-empty">This host reports no NUMA topology.</p>')
    for cell in topology.cells:
        collapsed = many_cells or len(cell.cpus) > collapse_threshold
        classes = "cell" + (" memory-only" if not cell.cpus else "")
        out.append(
            f"<details{attrs(class_=classes, data_cell=cell.id, open=None if collapsed else '')}>"
            f"<summary>{cell_summary(cell, memory[cell.id], marks, vm_list)}</summary>"
        )
        if cell.cpus:
            out.append(f'<div class="cell-body">{cell_svg(cell, marks, prefix)}</div>')
        else:
            out.append('<p class="cell-body memory-only">Memory only: no CPUs on this node.</p>')
        out.append("</details>")
    out.append("</div>")
    return "".join(out)
