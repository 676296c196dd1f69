"""Geometry of a cell's drawing: the box tree (cell -> sockets -> dies -> cores -> threads)
and where each box sits, wrapped into rows at :data:`MAX_WIDTH`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hosts.diagram.textfit import THREAD_W
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import Cell, Cpu

#: Width the cell SVG wraps its boxes at: the portal's 1200px main column, so it shows 1:1
#: (narrower screens scale it down with CSS max-width: 100%; diagram.js zooms).
MAX_WIDTH = 1150
#: Half of it, for two diagrams side by side (a balancing plan's before and after): each
#: column of the 1200px main column is ~555px wide, so these too show 1:1, not at half size.
HALF_WIDTH = 550

BOX_STYLE = {
    # kind: (padding, gap, fill, stroke, dash, label font size)
    "cell": (4, 10, "none", "none", None, 0),
    "socket": (8, 8, "#f1f4f9", "#8c97ab", None, 11),
    "die": (6, 6, "#f8fafc", "#a9b3c4", "4 3", 10),
    "core": (3, 2, "#dde3ec", "#aab4c4", None, 9),
    "offline": (8, 6, "#fbf3e6", "#c9a36a", "4 3", 11),
}


@dataclass
class Box:
    kind: str
    label: str = ""
    attrs: dict[str, object] = field(default_factory=dict)
    children: list[Box] = field(default_factory=list)
    cpu: Cpu | None = None
    w: float = 0
    h: float = 0
    x: float = 0
    y: float = 0


def _label_h(kind: str, label: str) -> float:
    size = BOX_STYLE[kind][5]
    return size + 4 if label and size else 0


def measure(box: Box, max_width: float, thread_h: float) -> None:
    if box.cpu is not None:
        box.w, box.h = THREAD_W, thread_h
        return
    pad, gap, *_ = BOX_STYLE[box.kind]
    inner = max_width - 2 * pad
    for child in box.children:
        measure(child, inner, thread_h)
    top = pad + _label_h(box.kind, box.label)
    x = y = row_h = width = 0.0
    for child in box.children:
        if x and x + child.w > inner:  # wrap to a new row
            y += row_h + gap
            x = row_h = 0.0
        child.x, child.y = pad + x, top + y
        x += child.w + gap
        row_h = max(row_h, child.h)
        width = max(width, x - gap)
    box.w = width + 2 * pad
    box.h = top + y + row_h + pad


def _key_sort(value: int | None) -> tuple[int, int]:
    return (1, 0) if value is None else (0, value)


def cell_tree(cell: Cell) -> Box:
    """cell -> sockets -> dies (only when a socket has several) -> cores -> threads."""
    root = Box("cell")
    grouped: dict[int | None, dict[int | None, dict[int, list[Cpu]]]] = {}
    loose: list[Cpu] = []
    for cpu in cell.cpus:
        if cpu.core_id is None:
            loose.append(cpu)  # offline CPUs: libvirt gives no ids, so no core to put them in
            continue
        by_die = grouped.setdefault(cpu.socket_id, {})
        by_die.setdefault(cpu.die_id, {}).setdefault(cpu.core_id, []).append(cpu)

    for socket_id in sorted(grouped, key=_key_sort):
        dies = grouped[socket_id]
        socket = Box(
            "socket",
            f"socket {socket_id}" if socket_id is not None else "socket ?",
            {"data_socket": socket_id},
        )
        root.children.append(socket)
        for die_id in sorted(dies, key=_key_sort):
            parent = socket
            if len(dies) > 1:
                parent = Box("die", f"die {die_id}", {"data_die": die_id})
                socket.children.append(parent)
            cores = dies[die_id]
            for core_id in sorted(cores, key=lambda c: (min(t.id for t in cores[c]), c)):
                threads = sorted(cores[core_id], key=lambda t: t.id)
                parent.children.append(
                    Box(
                        "core",
                        f"core {core_id}",
                        {
                            "data_socket": socket_id,
                            "data_die": die_id,
                            "data_core": core_id,
                            "data_cpus": format_cpuset(t.id for t in threads),
                        },
                        [Box("thread", cpu=t) for t in threads],
                    )
                )
    if loose:
        root.children.append(
            Box(
                "offline",
                "no topology ids (offline?)",
                {},
                [Box("thread", cpu=t) for t in sorted(loose, key=lambda t: t.id)],
            )
        )
    return root
