"""The whole diagram fragment: toolbar, legend, then one ``<details>`` per NUMA cell; and one
cell's drawing alone, for a page that loads a collapsed cell's drawing when it is opened.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from hosts.diagram.cell_summary import cell_summary
from hosts.diagram.cell_svg import cell_svg
from hosts.diagram.layout import MAX_WIDTH
from hosts.diagram.legend import legend
from hosts.diagram.marks import CpuMarks, cpu_marks, vm_order
from hosts.diagram.markup import attrs, esc, safe_href
from hosts.diagram.model import CellMemory, DiagramVm
from numaportal.virt.topology import Cell, HostTopology

MEMORY_ONLY = "Memory only: no CPUs on this node."


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


def _prefix(id_prefix: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "", id_prefix) or "numa"


def _cell_body(
    cell: Cell, marks: Mapping[int, CpuMarks], prefix: str, wrap_width: float = MAX_WIDTH
) -> str:
    """What a cell's ``.cell-body`` holds: its drawing, or the memory-only note."""
    return cell_svg(cell, marks, prefix, wrap_width) if cell.cpus else esc(MEMORY_ONLY)


def _deferred_body(cell: Cell, url: str) -> str:
    """A collapsed cell's body without its drawing: htmx fetches it from *url* the first time
    the cell is opened (also by "expand all"); without JavaScript the link shows it."""
    return (
        f'<div class="cell-body"{attrs(hx_get=url)} hx-trigger="toggle once from:closest details"'
        f' hx-swap="innerHTML"><a class="cell-load"{attrs(href=url)}>'
        f"drawing of node {cell.id}</a></div>"
    )


def render_topology_svg(
    topology: HostTopology,
    vms: Iterable[DiagramVm],
    cell_memory: Mapping[int, CellMemory] | Iterable[CellMemory] | None = None,
    *,
    collapse_threshold: int = 128,
    id_prefix: str = "numa",
    cell_url: Callable[[int], str] | None = None,
    wrap_width: float = MAX_WIDTH,
) -> str:
    """The host's topology diagram as an HTML fragment (legend + one ``<details>`` per cell).

    *cell_memory* is keyed by cell id (or an iterable of :class:`CellMemory`); a cell missing
    from it shows the topology's total with free unknown. Cells with more than
    *collapse_threshold* threads, and every cell of a host with more than four cells, are
    collapsed. *id_prefix* keeps SVG pattern ids unique if two diagrams share a page.
    *cell_url* (cell id -> URL serving :func:`render_cell_svg` of that cell) defers the
    drawings of collapsed cells: their summaries are sent, their drawings load when opened,
    so that a 448-thread host's page carries ten summary lines, not ten drawings.
    *wrap_width*: the width the cells' drawings wrap their boxes at (``HALF_WIDTH`` for two
    diagrams side by side, so that they show at their size rather than scaled down).
    Safe to include with ``|safe``: everything from outside is escaped.
    """
    vm_list = sorted(vms, key=vm_order)
    prefix = _prefix(id_prefix)
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
        url = safe_href(cell_url(cell.id)) if collapsed and cell_url is not None else None
        if not cell.cpus:
            out.append(f'<p class="cell-body memory-only">{esc(MEMORY_ONLY)}</p>')
        elif url is not None:
            out.append(_deferred_body(cell, url))
        else:
            body = _cell_body(cell, marks, prefix, wrap_width)
            out.append(f'<div class="cell-body">{body}</div>')
        out.append("</details>")
    out.append("</div>")
    return "".join(out)


def render_cell_svg(
    topology: HostTopology,
    vms: Iterable[DiagramVm],
    cell_id: int,
    *,
    id_prefix: str = "numa",
    wrap_width: float = MAX_WIDTH,
) -> str:
    """What :func:`render_topology_svg` puts in the ``.cell-body`` of cell *cell_id*, alone:
    the body a deferred cell loads. KeyError when the host has no such cell."""
    cell = topology.cell(cell_id)
    marks = cpu_marks(topology, sorted(vms, key=vm_order))
    return _cell_body(cell, marks, _prefix(id_prefix), wrap_width)
