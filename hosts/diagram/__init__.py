"""The host page's topology diagram: cells -> sockets -> (dies) -> cores -> hardware threads.

Drawn on the server as an HTML fragment: a legend, then one ``<details>`` per NUMA cell whose
``<summary>`` line is readable on its own (CPU list, memory used/free bar, pinned vCPUs,
over-committed CPUs) and whose body is an inline ``<svg>`` of that cell. Small hosts render
every cell open; a cell with more than ``collapse_threshold`` threads, or any cell of a host with
more than four cells, renders collapsed, so a 448-thread 10-cell host opens as ten summary lines.
Given a ``cell_url``, collapsed cells are sent without their drawing, which the page loads
(htmx, :func:`render_cell_svg` behind that URL) when the cell is opened.

Pure Python: no Django, no libvirt. The page includes the result with ``|safe``, so this package
owns escaping: every string that reaches the output (VM names come from hypervisors and are
hostile, URLs, uuids) goes through :func:`hosts.diagram.markup.esc`, and links are limited to
http(s)/relative URLs. The fragment is also well-formed XML, which is how the tests check it.

Stable hooks for page tests and ``diagram.js``: ``data-cell``, ``data-cpu``, ``data-vm-uuid``,
``data-vcpu`` attributes; classes ``cell``, ``socket``, ``die``, ``core``, ``thread``, ``chip``,
``floating``, ``emulator``, ``overcommitted``, ``cpu-id``, ``emulator-summary``, ``more``
(the last two focusable, their full list in ``<title>`` and ``aria-label``).

Modules, each importing only those above it in this list:

- ``model``: the inputs, :class:`DiagramVm` and :class:`CellMemory`
- ``colours``: a VM's colour from its uuid, readable text on it
- ``markup``: escaping, attribute lists, safe links, short text pieces
- ``marks``: what is on each physical CPU (:func:`cpu_marks`), over-commit included
- ``textfit``: room for text in a thread box: label widths, what fits beside the CPU id, the
  rows of a cell's thread boxes (so no text is drawn over another), summaries of what does not
- ``layout``: the box tree of a cell and its geometry
- ``cell_svg``: one cell's ``<svg>``
- ``cell_summary``: one cell's ``<summary>`` line
- ``legend``: the key and the VM list
- ``fragment``: :func:`render_topology_svg`, the whole fragment; :func:`render_cell_svg`, one
  cell's drawing (what a deferred cell loads when opened)
"""

from hosts.diagram.colours import contrast_ratio, vm_colour, vm_text_colour
from hosts.diagram.fragment import render_cell_svg, render_topology_svg
from hosts.diagram.layout import HALF_WIDTH, MAX_WIDTH
from hosts.diagram.marks import CpuMarks, VcpuRef, cpu_marks
from hosts.diagram.model import CellMemory, DiagramVm

__all__ = [
    "HALF_WIDTH",
    "MAX_WIDTH",
    "CellMemory",
    "CpuMarks",
    "DiagramVm",
    "VcpuRef",
    "contrast_ratio",
    "cpu_marks",
    "render_cell_svg",
    "render_topology_svg",
    "vm_colour",
    "vm_text_colour",
]
