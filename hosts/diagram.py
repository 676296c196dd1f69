"""The host page's topology diagram: cells -> sockets -> (dies) -> cores -> hardware threads.

Drawn on the server as an HTML fragment: a legend, then one ``<details>`` per NUMA cell whose
``<summary>`` line is readable on its own (CPU list, memory used/free bar, pinned vCPUs,
over-committed CPUs) and whose body is an inline ``<svg>`` of that cell. Small hosts render
every cell open; a cell with more than ``collapse_threshold`` threads, or any cell of a host with
more than four cells, renders collapsed, so a 448-thread 10-cell host opens as ten summary lines.

Pure Python: no Django, no libvirt. The page includes the result with ``|safe``, so this module
owns escaping: every string that reaches the output (VM names come from hypervisors and are
hostile, URLs, uuids) goes through :func:`_esc`, and links are limited to http(s)/relative URLs.
The fragment is also well-formed XML, which is how the tests check it.

Stable hooks for page tests and ``diagram.js``: ``data-cell``, ``data-cpu``, ``data-vm-uuid``,
``data-vcpu`` attributes; classes ``cell``, ``socket``, ``die``, ``core``, ``thread``, ``chip``,
``floating``, ``emulator``, ``overcommitted``.
"""

from __future__ import annotations

import colorsys
import hashlib
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import Cell, Cpu, HostTopology

__all__ = [
    "CellMemory",
    "CpuMarks",
    "VcpuRef",
    "VmPlacement",
    "cpu_marks",
    "render_topology_svg",
    "vm_colour",
    "vm_text_colour",
]


# --- input ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmPlacement:
    """Where one VM's vCPUs, emulator threads and memory are, as the last sync saw them."""

    name: str
    uuid: str
    url: str
    #: Effective live affinity of each online vCPU (``virsh vcpuinfo``'s "CPU Affinity").
    vcpu_affinity: dict[int, frozenset[int]]
    #: vCPUs with an explicit ``<vcpupin>`` (the others float within their affinity).
    pinned_vcpus: frozenset[int] = frozenset()
    #: ``virsh emulatorpin``; None when the emulator is not pinned.
    emulatorpin: frozenset[int] | None = None
    #: vCPU -> physical CPU it last ran on (``virsh vcpuinfo``'s "CPU").
    last_cpu: dict[int, int] = field(default_factory=dict)
    memory_cells: frozenset[int] = frozenset()
    memory_kib: int = 0
    cross_node: bool = False


@dataclass(frozen=True, slots=True)
class CellMemory:
    """``virsh freecell``: a cell's memory; free is None when the host did not say."""

    cell_id: int
    total_kib: int
    free_kib: int | None


# --- colours ----------------------------------------------------------------------------------


def _rgb(uuid: str) -> tuple[float, float, float]:
    # sha256, not hash(): Python salts str hashes per process, and a VM must keep its colour
    # across page loads, workers and screenshots. uuids are case-insensitive.
    digest = hashlib.sha256(uuid.strip().lower().encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    saturation = (0.55, 0.65, 0.75)[digest[2] % 3]
    lightness = (0.38, 0.48, 0.58)[digest[3] % 3]
    return colorsys.hls_to_rgb(hue / 360, lightness, saturation)


def vm_colour(uuid: str) -> str:
    """A VM's colour, ``#rrggbb``: hue (and a little lightness) from sha256 of its uuid."""
    return "#" + "".join(f"{round(channel * 255):02x}" for channel in _rgb(uuid))


def _luminance(rgb: tuple[float, float, float]) -> float:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: float, b: float) -> float:
    """WCAG contrast ratio between two relative luminances."""
    light, dark = max(a, b), min(a, b)
    return (light + 0.05) / (dark + 0.05)


def vm_text_colour(uuid: str) -> str:
    """Black or white, whichever contrasts more with :func:`vm_colour` (always >= 4.5:1)."""
    lum = _luminance(_rgb(uuid))
    return "#000000" if contrast_ratio(lum, 0.0) >= contrast_ratio(lum, 1.0) else "#ffffff"


# --- what is on each physical CPU -------------------------------------------------------------


@dataclass(frozen=True)
class VcpuRef:
    """One vCPU of one VM, as seen from a physical CPU."""

    vm: VmPlacement
    vcpu: int
    #: Its affinity (for a pinned vCPU: its pin).
    cpuset: frozenset[int]
    last_ran_here: bool


@dataclass(frozen=True)
class CpuMarks:
    """Everything the diagram draws on one hardware thread."""

    cpu_id: int
    #: vCPUs with an explicit pin that includes this CPU (exclusive or a range).
    pinned: tuple[VcpuRef, ...] = ()
    #: VMs with an unpinned vCPU whose affinity includes this CPU.
    floating: tuple[VmPlacement, ...] = ()
    #: VMs whose emulator threads are pinned to a set including this CPU.
    emulator: tuple[VmPlacement, ...] = ()
    #: vCPUs (pinned or not) that last ran on this CPU.
    last_ran: tuple[VcpuRef, ...] = ()
    #: More pinned vCPUs compete for this thread than there are threads for them.
    overcommitted: bool = False


def _vm_order(vm: VmPlacement) -> tuple[str, str]:
    return (vm.name.casefold(), vm.uuid)


def _augment(start: int, pins: list[tuple[int, ...]], owner: dict[int, int]) -> bool:
    """Kuhn's augmenting path from vCPU *start*, iteratively (no recursion limit on big hosts)."""
    seen: set[int] = set()
    stack = [(start, iter(pins[start]))]
    path: list[int] = []  # path[i] is the CPU stack[i] would take
    while stack:
        _, candidates = stack[-1]
        for cpu in candidates:
            if cpu in seen:
                continue
            seen.add(cpu)
            path.append(cpu)
            if cpu not in owner:
                for (vcpu, _), taken in zip(stack, path, strict=True):
                    owner[taken] = vcpu
                return True
            stack.append((owner[cpu], iter(pins[owner[cpu]])))
            break
        else:
            stack.pop()
            if path:
                path.pop()
    return False


def _overloaded_cpus(pins: list[frozenset[int]]) -> set[int]:
    """CPUs in some set T pinned by more vCPUs (pins within T) than T has threads.

    With exclusive pins this is simply "two or more vCPUs pinned to this thread"; with range
    pins it is Hall's condition: two vCPUs pinned to 22-23 share two threads (fine), three do
    not. A maximum matching of vCPUs to CPUs, then every CPU reachable by alternating paths
    from an unmatched vCPU, is exactly the union of the violating sets.
    """
    lists = [tuple(sorted(p)) for p in pins]
    owner: dict[int, int] = {}
    unmatched = [v for v in range(len(lists)) if not _augment(v, lists, owner)]
    overloaded: set[int] = set()
    todo = list(unmatched)
    visited = set(unmatched)
    while todo:
        vcpu = todo.pop()
        for cpu in lists[vcpu]:
            if cpu in overloaded:
                continue
            overloaded.add(cpu)
            other = owner[cpu]  # every reachable CPU is matched, or the matching wasn't maximum
            if other not in visited:
                visited.add(other)
                todo.append(other)
    return overloaded


def cpu_marks(topology: HostTopology, vms: Iterable[VmPlacement]) -> dict[int, CpuMarks]:
    """Per physical CPU of *topology*: pinned vCPUs, floating VMs, emulator pins, last runs.

    Every host CPU gets an entry (empty marks when nothing is there). CPUs a VM names that
    are not on the host (stale data) are ignored. Entries are ordered by VM name, then vCPU.
    """
    host_cpus = topology.cpu_ids
    pinned: dict[int, list[VcpuRef]] = {cpu: [] for cpu in host_cpus}
    floating: dict[int, list[VmPlacement]] = {cpu: [] for cpu in host_cpus}
    emulator: dict[int, list[VmPlacement]] = {cpu: [] for cpu in host_cpus}
    last_ran: dict[int, list[VcpuRef]] = {cpu: [] for cpu in host_cpus}
    pin_sets: list[frozenset[int]] = []

    for vm in sorted(vms, key=_vm_order):
        floats_on: set[int] = set()
        for vcpu in sorted(vm.vcpu_affinity):
            cpuset = vm.vcpu_affinity[vcpu] & host_cpus
            last = vm.last_cpu.get(vcpu)
            is_pinned = vcpu in vm.pinned_vcpus
            if is_pinned and cpuset:
                pin_sets.append(cpuset)
            for cpu in sorted(cpuset):
                if is_pinned:
                    pinned[cpu].append(VcpuRef(vm, vcpu, cpuset, last == cpu))
                else:
                    floats_on.add(cpu)
            if last is not None and last in host_cpus:
                last_ran[last].append(VcpuRef(vm, vcpu, cpuset, True))
        for cpu in floats_on:
            floating[cpu].append(vm)
        for cpu in (vm.emulatorpin or frozenset()) & host_cpus:
            emulator[cpu].append(vm)

    overloaded = _overloaded_cpus(pin_sets)
    return {
        cpu: CpuMarks(
            cpu_id=cpu,
            pinned=tuple(pinned[cpu]),
            floating=tuple(floating[cpu]),
            emulator=tuple(emulator[cpu]),
            last_ran=tuple(last_ran[cpu]),
            overcommitted=cpu in overloaded,
        )
        for cpu in sorted(host_cpus)
    }


# --- escaping ---------------------------------------------------------------------------------

# XML 1.0 forbids most C0 controls and lone surrogates; a VM name holding one would make the
# fragment unparsable (and browsers mangle them). Replace rather than drop so the name still
# shows that something odd is there.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _esc(value: object) -> str:
    """Escape for both element text and double-quoted attribute values."""
    return html.escape(_FORBIDDEN.sub("\ufffd", str(value)), quote=True)


def _attrs(**attrs: object) -> str:
    """`` k="v"`` pairs; underscores become dashes (data_cpu -> data-cpu); None is skipped."""
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(f' {name}="{_esc(value)}"')
    return "".join(parts)


def _safe_href(url: str) -> str | None:
    """The URL if it is relative or http(s); None for ``javascript:``, ``data:`` and the like."""
    # Browsers drop tabs/newlines inside a scheme ("java\tscript:"): refuse any control or
    # space character rather than guess how a browser will read it.
    if not isinstance(url, str) or not url or _FORBIDDEN.search(url):
        return None
    if any(ord(ch) <= 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in url):
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("", "http", "https") else None


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "\u2026"


def _size(kib: int) -> str:
    if kib >= 1024 * 1024:
        return f"{kib / (1024 * 1024):.1f} GiB"
    if kib >= 1024:
        return f"{kib / 1024:.0f} MiB"
    return f"{kib} KiB"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- layout -----------------------------------------------------------------------------------

THREAD_W = 78
CHIP_H = 13
CHIP_GAP = 2
HEADER_H = 16
FLOAT_STRIP_H = 5
OVER_H = 11
MAX_CHIP_ROWS = 3
#: The VM legend scrolls (a few lines high) above this many VMs.
LEGEND_OPEN_MAX = 16
#: Width the cell SVG wraps its boxes at: the portal's 1200px main column, so it shows 1:1
#: (narrower screens scale it down with CSS max-width: 100%; diagram.js zooms).
MAX_WIDTH = 1150
#: Characters that fit in a chip at 9px monospace.
CHIP_CHARS = 12
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
MONO = "ui-monospace, 'DejaVu Sans Mono', monospace"
OVER_COLOUR = "#c62828"

_BOX_STYLE = {
    # kind: (padding, gap, fill, stroke, dash, label font size)
    "cell": (4, 10, "none", "none", None, 0),
    "socket": (8, 8, "#f1f4f9", "#8c97ab", None, 11),
    "die": (6, 6, "#f8fafc", "#a9b3c4", "4 3", 10),
    "core": (3, 2, "#dde3ec", "#aab4c4", None, 9),
    "offline": (8, 6, "#fbf3e6", "#c9a36a", "4 3", 11),
}


@dataclass
class _Box:
    kind: str
    label: str = ""
    attrs: dict[str, object] = field(default_factory=dict)
    children: list[_Box] = field(default_factory=list)
    cpu: Cpu | None = None
    w: float = 0
    h: float = 0
    x: float = 0
    y: float = 0


def _label_h(kind: str, label: str) -> float:
    size = _BOX_STYLE[kind][5]
    return size + 4 if label and size else 0


def _measure(box: _Box, max_width: float, thread_h: float) -> None:
    if box.cpu is not None:
        box.w, box.h = THREAD_W, thread_h
        return
    pad, gap, *_ = _BOX_STYLE[box.kind]
    inner = max_width - 2 * pad
    for child in box.children:
        _measure(child, inner, thread_h)
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


def _cell_tree(cell: Cell) -> _Box:
    """cell -> sockets -> dies (only when a socket has several) -> cores -> threads."""
    root = _Box("cell")
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
        socket = _Box(
            "socket",
            f"socket {socket_id}" if socket_id is not None else "socket ?",
            {"data_socket": socket_id},
        )
        root.children.append(socket)
        for die_id in sorted(dies, key=_key_sort):
            parent = socket
            if len(dies) > 1:
                parent = _Box("die", f"die {die_id}", {"data_die": die_id})
                socket.children.append(parent)
            cores = dies[die_id]
            for core_id in sorted(cores, key=lambda c: (min(t.id for t in cores[c]), c)):
                threads = sorted(cores[core_id], key=lambda t: t.id)
                parent.children.append(
                    _Box(
                        "core",
                        f"core {core_id}",
                        {
                            "data_socket": socket_id,
                            "data_die": die_id,
                            "data_core": core_id,
                            "data_cpus": format_cpuset(t.id for t in threads),
                        },
                        [_Box("thread", cpu=t) for t in threads],
                    )
                )
    if loose:
        root.children.append(
            _Box(
                "offline",
                "no topology ids (offline?)",
                {},
                [_Box("thread", cpu=t) for t in sorted(loose, key=lambda t: t.id)],
            )
        )
    return root


# --- drawing ----------------------------------------------------------------------------------


def _chip_refs(marks: CpuMarks) -> list[tuple[VcpuRef, str]]:
    """Chips for a thread: pinned vCPUs, then unpinned vCPUs that last ran here."""
    chips = [(ref, "pinned") for ref in marks.pinned]
    pinned_here = {(ref.vm.uuid, ref.vcpu) for ref in marks.pinned}
    chips += [
        (ref, "running")
        for ref in marks.last_ran
        if (ref.vm.uuid, ref.vcpu) not in pinned_here and ref.vcpu not in ref.vm.pinned_vcpus
    ]
    return chips


def _chip_label(name: str, vcpu: int) -> str:
    suffix = f":{vcpu}"
    room = CHIP_CHARS - len(suffix)
    if room < 3:
        return _clip(f"vCPU {vcpu}", CHIP_CHARS)
    return _clip(name, room) + suffix


def _draw_chip(ref: VcpuRef, kind: str, x: float, y: float, out: list[str]) -> None:
    vm = ref.vm
    colour = vm_colour(vm.uuid)
    where = format_cpuset(ref.cpuset) if ref.cpuset else "?"
    if kind == "pinned":
        exclusive = len(ref.cpuset) == 1
        tip = f"{vm.name} vCPU {ref.vcpu}: pinned to CPU {where}"
        if not exclusive:
            tip += "; last ran here" if ref.last_ran_here else "; shares the range"
        fill, text, stroke = colour, vm_text_colour(vm.uuid), "#1d2330"
        dash = None if exclusive else "3 2"
        opacity = None if exclusive or ref.last_ran_here else "0.6"
        classes = "chip pinned" + ("" if exclusive else " range")
    else:
        tip = f"{vm.name} vCPU {ref.vcpu}: not pinned (may run on {where}); last ran here"
        fill, text, stroke, dash, opacity = "#ffffff", "#1d2330", colour, "2 1.5", None
        classes = "chip running"
    width = THREAD_W - 6
    out.append(
        f"<g{_attrs(class_=classes, data_vm_uuid=vm.uuid, data_vcpu=ref.vcpu, opacity=opacity)}"
        f' transform="translate({x:g},{y:g})">'
        f"<title>{_esc(tip)}</title>"
        f"<rect{_attrs(width=width, height=CHIP_H, rx=2, fill=fill, stroke=stroke)}"
        f"{_attrs(stroke_width=1.2 if kind == 'running' else 0.6, stroke_dasharray=dash)}/>"
        f'<text x="3" y="9.8" font-size="9" font-family="{MONO}"{_attrs(fill=text)}>'
        f"{_esc(_chip_label(vm.name, ref.vcpu))}</text></g>"
    )


def _thread_title(cpu: Cpu, marks: CpuMarks) -> str:
    lines = [
        f"CPU {cpu.id}: node {cpu.cell_id}, socket {cpu.socket_id}, die {cpu.die_id}, "
        f"core {cpu.core_id}, siblings {format_cpuset(cpu.siblings)}"
    ]
    if marks.pinned:
        lines.append("pinned: " + ", ".join(f"{r.vm.name}:{r.vcpu}" for r in marks.pinned))
    if marks.floating:
        lines.append("may float here: " + ", ".join(vm.name for vm in marks.floating))
    if marks.emulator:
        lines.append("emulator pinned: " + ", ".join(vm.name for vm in marks.emulator))
    if marks.last_ran:
        lines.append("last ran here: " + ", ".join(f"{r.vm.name}:{r.vcpu}" for r in marks.last_ran))
    if marks.overcommitted:
        lines.append("over-committed: more pinned vCPUs than hardware threads")
    return "\n".join(lines)


def _draw_thread(box: _Box, marks: CpuMarks, rows: int, hatch: str, out: list[str]) -> None:
    cpu = box.cpu
    assert cpu is not None
    classes = ["thread"]
    if marks.pinned:
        classes.append("pinned")
    if marks.floating:
        classes.append("floating")
    if marks.emulator:
        classes.append("emulator")
    if marks.overcommitted:
        classes.append("overcommitted")
    out.append(
        f"<g{_attrs(class_=' '.join(classes), data_cpu=cpu.id, data_cell=cpu.cell_id)}"
        f' transform="translate({box.x:g},{box.y:g})">'
        f"<title>{_esc(_thread_title(cpu, marks))}</title>"
    )
    stroke, stroke_w = (OVER_COLOUR, 2.5) if marks.overcommitted else ("#8c97ab", 1)
    fill = f"url(#{hatch})" if marks.floating else "#ffffff"
    out.append(
        f"<rect{_attrs(class_='thread-box', width=box.w, height=box.h, rx=3, fill=fill)}"
        f"{_attrs(stroke=stroke, stroke_width=stroke_w)}/>"
        f'<text x="4" y="12" font-size="10.5" font-weight="700" fill="#1d2330"'
        f' font-family="{FONT}">{cpu.id}</text>'
    )

    # Emulator marks, right-aligned in the header: one "E" per VM, in its colour.
    shown = marks.emulator[:3]
    for i, vm in enumerate(reversed(shown)):
        x = box.w - 4 - 12 * (i + 1) + 1
        out.append(
            f"<g{_attrs(class_='emulator-mark', data_vm_uuid=vm.uuid)}"
            f' transform="translate({x:g},3)">'
            f"<title>{_esc(f'{vm.name}: emulator threads pinned to ' + _pin_text(vm))}</title>"
            f'<rect width="11" height="11" rx="2"{_attrs(fill=vm_colour(vm.uuid))}'
            f' stroke="#1d2330" stroke-width="0.6"/>'
            f'<text x="5.5" y="8.8" font-size="8.5" font-weight="700" text-anchor="middle"'
            f' font-family="{FONT}"{_attrs(fill=vm_text_colour(vm.uuid))}>E</text></g>'
        )
    if len(marks.emulator) > len(shown):
        more = len(marks.emulator) - len(shown)
        out.append(
            f'<text x="{box.w - 4 - 12 * len(shown) - 2:g}" y="11.5" font-size="8.5"'
            f' text-anchor="end" fill="#1d2330" font-family="{FONT}">'
            f"<title>{_esc(', '.join(vm.name for vm in marks.emulator))}</title>E+{more}</text>"
        )

    chips = _chip_refs(marks)
    visible = chips if len(chips) <= rows else chips[: rows - 1]
    y = HEADER_H
    for ref, kind in visible:
        _draw_chip(ref, kind, 3, y, out)
        y += CHIP_H + CHIP_GAP
    if len(visible) < len(chips):
        hidden = chips[len(visible) :]
        tip = ", ".join(f"{ref.vm.name}:{ref.vcpu}" for ref, _ in hidden)
        out.append(
            f'<text class="more" x="5" y="{y + 9.8:g}" font-size="9" fill="#1d2330"'
            f' font-family="{FONT}"><title>{_esc(tip)}</title>+{len(hidden)} more</text>'
        )

    if marks.floating:
        # A strip of the floating VMs' colours along the bottom edge.
        strip_y = box.h - FLOAT_STRIP_H - 2
        segment = (box.w - 6) / min(len(marks.floating), 8)
        for i, vm in enumerate(marks.floating[:8]):
            out.append(
                f"<rect{_attrs(class_='float-mark', data_vm_uuid=vm.uuid)}"
                f' x="{3 + i * segment:g}" y="{strip_y:g}" width="{segment:g}"'
                f' height="{FLOAT_STRIP_H}"{_attrs(fill=vm_colour(vm.uuid))}>'
                f"<title>{_esc(vm.name)} may float here</title></rect>"
            )
    if marks.overcommitted:
        bottom = box.h - (FLOAT_STRIP_H + 4 if marks.floating else 3)
        out.append(
            f'<text class="overcommitted-label" x="{box.w / 2:g}" y="{bottom:g}"'
            f' font-size="8" font-weight="700" text-anchor="middle"'
            f' fill="{OVER_COLOUR}" font-family="{FONT}">over-committed</text>'
        )
    out.append("</g>")


def _draw_box(
    box: _Box,
    marks: Mapping[int, CpuMarks],
    rows: int,
    hatch: str,
    out: list[str],
    *,
    root: bool = False,
) -> None:
    if box.cpu is not None:
        _draw_thread(box, marks[box.cpu.id], rows, hatch, out)
        return
    pad, _, fill, stroke, dash, font = _BOX_STYLE[box.kind]
    if not root:
        out.append(f"<g{_attrs(class_=box.kind, **box.attrs)}")
        out.append(f' transform="translate({box.x:g},{box.y:g})">')
        out.append(
            f"<rect{_attrs(width=box.w, height=box.h, rx=5, fill=fill, stroke=stroke)}"
            f"{_attrs(stroke_dasharray=dash)}/>"
        )
        if box.label and font:
            out.append(
                f'<text x="{pad + 1}" y="{pad + font - 1}" font-size="{font}" fill="#4a5366"'
                f' font-family="{FONT}">{_esc(box.label)}</text>'
            )
    for child in box.children:
        _draw_box(child, marks, rows, hatch, out)
    if not root:
        out.append("</g>")


def _cell_svg(cell: Cell, marks: Mapping[int, CpuMarks], id_prefix: str) -> str:
    tree = _cell_tree(cell)
    cell_marks = [marks[cpu.id] for cpu in cell.cpus]
    # One thread height per cell keeps the grid even: enough chip rows for the busiest thread.
    busiest = max((len(_chip_refs(m)) for m in cell_marks), default=0)
    rows = max(1, min(busiest, MAX_CHIP_ROWS))
    thread_h = HEADER_H + rows * (CHIP_H + CHIP_GAP) + FLOAT_STRIP_H + 4
    if any(m.overcommitted for m in cell_marks):
        thread_h += OVER_H
    _measure(tree, MAX_WIDTH, thread_h)
    hatch = f"{id_prefix}-float-{cell.id}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cell-diagram"'
        f' width="{tree.w:g}" height="{tree.h:g}" viewBox="0 0 {tree.w:g} {tree.h:g}"'
        f' role="img"{_attrs(data_cell=cell.id, aria_label=f"NUMA node {cell.id} topology")}>'
        f'<defs><pattern{_attrs(id=hatch)} width="6" height="6"'
        ' patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#ffffff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#c9d3e6" stroke-width="2.2"/>'
        "</pattern></defs>"
    ]
    _draw_box(tree, marks, rows, hatch, out, root=True)
    out.append("</svg>")
    return "".join(out)


def _memory_bar(memory: CellMemory) -> str:
    width, height = 140, 10
    if memory.total_kib <= 0:
        used_w, tip = 0.0, "no memory"
    elif memory.free_kib is None:
        used_w, tip = 0.0, f"{_size(memory.total_kib)}, free unknown"
    else:
        used = max(memory.total_kib - memory.free_kib, 0)
        used_w = width * min(used / memory.total_kib, 1.0)
        tip = f"{_size(used)} used, {_size(memory.free_kib)} free of {_size(memory.total_kib)}"
    colour = "#c58a1b" if used_w > 0.9 * width else "#2f6db5"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="membar" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"{_attrs(aria_label=tip)}>'
        f"<title>{_esc(tip)}</title>"
        f'<rect width="{width}" height="{height}" rx="2" fill="#e2e6ec"'
        ' stroke="#aab4c4" stroke-width="0.8"/>'
        f'<rect class="used" width="{used_w:.1f}" height="{height}" rx="2" fill="{colour}"/>'
        "</svg>"
    )


def _memory_text(memory: CellMemory) -> str:
    if memory.free_kib is None:
        return f"{_size(memory.total_kib)} (free unknown)"
    used = max(memory.total_kib - memory.free_kib, 0)
    return f"{_size(used)} used, {_size(memory.free_kib)} free of {_size(memory.total_kib)}"


def _pin_text(vm: VmPlacement) -> str:
    return format_cpuset(vm.emulatorpin) if vm.emulatorpin else "-"


def _cell_summary(
    cell: Cell,
    memory: CellMemory,
    marks: Mapping[int, CpuMarks],
    vms: list[VmPlacement],
) -> str:
    cpus = format_cpuset(cell.cpu_ids) if cell.cpus else "no CPUs (memory-only)"
    cell_marks = [marks[cpu.id] for cpu in cell.cpus]
    pinned = {(r.vm.uuid, r.vcpu) for m in cell_marks for r in m.pinned}
    over = sum(1 for m in cell_marks if m.overcommitted)
    floating = {vm.uuid for m in cell_marks for vm in m.floating}
    bound = [vm.name for vm in vms if cell.id in vm.memory_cells]
    parts = [
        f'<span class="cell-name">node {cell.id}</span>',
        f'<span class="cell-cpus">{"CPUs " if cell.cpus else ""}{_esc(cpus)}</span>',
    ]
    if cell.cpus:
        parts.append(f'<span class="cell-threads">{_plural(len(cell.cpus), "thread")}</span>')
    parts.append(
        f'<span class="cell-mem">{_memory_bar(memory)} {_esc(_memory_text(memory))}</span>'
    )
    if cell.cpus:
        parts.append(f'<span class="cell-pins">{_plural(len(pinned), "pinned vCPU")}</span>')
    if over:
        parts.append(f'<span class="cell-over">{_plural(over, "over-committed CPU")}</span>')
    if floating:
        parts.append(f'<span class="cell-float">{_plural(len(floating), "VM")} may float</span>')
    if bound:
        parts.append(
            f'<span class="cell-bound"{_attrs(title=", ".join(bound))}>'
            f"memory of {_plural(len(bound), 'VM')} bound here</span>"
        )
    return " ".join(parts)


def _legend(vms: list[VmPlacement], id_prefix: str) -> str:
    key_hatch = f"{id_prefix}-float-key"
    key = (
        '<ul class="numa-key">'
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="22" height="12" aria-hidden="true">'
        '<rect width="22" height="12" rx="2" fill="#2f6db5"/></svg> pinned vCPU</li>'
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="22" height="12" aria-hidden="true">'
        '<rect x="0.5" y="0.5" width="21" height="11" rx="2" fill="#2f6db5" stroke="#1d2330"'
        ' stroke-dasharray="3 2" opacity="0.6"/></svg> pinned to a range</li>'
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="22" height="12" aria-hidden="true">'
        '<rect x="0.75" y="0.75" width="20.5" height="10.5" rx="2" fill="#fff"'
        ' stroke="#2f6db5" stroke-width="1.5" stroke-dasharray="2 1.5"/></svg>'
        " unpinned vCPU last ran here</li>"
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="22" height="12" aria-hidden="true">'
        f'<defs><pattern id="{_esc(key_hatch)}" width="6" height="6"'
        ' patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#fff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#c9d3e6" stroke-width="2.2"/></pattern></defs>'
        f'<rect x="0.5" y="0.5" width="21" height="11" fill="url(#{_esc(key_hatch)})"'
        ' stroke="#8c97ab"/></svg> VMs may float here</li>'
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="12" height="12" aria-hidden="true">'
        '<rect width="12" height="12" rx="2" fill="#555"/><text x="6" y="9.5" font-size="9"'
        ' font-weight="700" fill="#fff" text-anchor="middle">E</text></svg> emulator pin</li>'
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="22" height="12" aria-hidden="true">'
        f'<rect x="1.25" y="1.25" width="19.5" height="9.5" fill="#fff" stroke="{OVER_COLOUR}"'
        ' stroke-width="2.5"/></svg> over-committed</li>'
        "</ul>"
    )
    if not vms:
        return key + '<p class="numa-legend-empty">No VMs on this host.</p>'
    items = []
    for vm in vms:
        colour = vm_colour(vm.uuid)
        swatch = (
            '<svg xmlns="http://www.w3.org/2000/svg" class="swatch" width="12" height="12"'
            f' aria-hidden="true"><rect width="12" height="12" rx="2"{_attrs(fill=colour)}/></svg>'
        )
        href = _safe_href(vm.url)
        name = f"<a{_attrs(href=href)}>{_esc(vm.name)}</a>" if href else _esc(vm.name)
        facts = []
        if vm.vcpu_affinity:
            facts.append(f"vCPUs {format_cpuset(vm.vcpu_affinity)}")
            if vm.pinned_vcpus:
                facts.append(f"{len(vm.pinned_vcpus)} pinned")
        if vm.emulatorpin:
            facts.append(f"emulator {format_cpuset(vm.emulatorpin)}")
        if vm.memory_cells:
            facts.append(f"memory node {format_cpuset(vm.memory_cells)}")
        cross = ' <span class="cross-node">cross-node</span>' if vm.cross_node else ""
        items.append(
            f"<li{_attrs(class_='vm', data_vm_uuid=vm.uuid)}>{swatch} {name}"
            f' <span class="facts">{_esc(", ".join(facts))}</span>{cross}</li>'
        )
    # A host with a hundred VMs would push the diagram off the screen: the list scrolls in a
    # few lines instead. (Not a <details>: every <details> in the fragment is a NUMA cell.)
    classes = "numa-legend" + (" scrolling" if len(vms) > LEGEND_OPEN_MAX else "")
    return (
        key
        + f'<p class="numa-vms">{_plural(len(vms), "VM")}:</p>'
        + f"<ul{_attrs(class_=classes)}>{''.join(items)}</ul>"
    )


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
    vms: Iterable[VmPlacement],
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
    vm_list = sorted(vms, key=_vm_order)
    prefix = re.sub(r"[^A-Za-z0-9_-]", "", id_prefix) or "numa"
    marks = cpu_marks(topology, vm_list)
    memory = _memory_map(topology, cell_memory)
    many_cells = len(topology.cells) > 4

    out = [
        f"<div{_attrs(class_='numa-diagram', data_cells=len(topology.cells))}"
        f"{_attrs(data_cpus=len(topology.cpu_ids))}>",
        '<div class="numa-toolbar" hidden="">'
        '<button type="button" data-action="zoom-out" title="Zoom out">\u2212</button>'
        '<button type="button" data-action="zoom-fit" title="Fit to width">fit</button>'
        '<button type="button" data-action="zoom-in" title="Zoom in">+</button>'
        '<button type="button" data-action="expand">expand all</button>'
        '<button type="button" data-action="collapse">collapse all</button></div>',
        _legend(vm_list, prefix),
    ]
    if not topology.cells:
        out.append('<p class="numa-empty">This host reports no NUMA topology.</p>')
    for cell in topology.cells:
        collapsed = many_cells or len(cell.cpus) > collapse_threshold
        classes = "cell" + (" memory-only" if not cell.cpus else "")
        out.append(
            f"<details{_attrs(class_=classes, data_cell=cell.id, open=None if collapsed else '')}>"
            f"<summary>{_cell_summary(cell, memory[cell.id], marks, vm_list)}</summary>"
        )
        if cell.cpus:
            out.append(f'<div class="cell-body">{_cell_svg(cell, marks, prefix)}</div>')
        else:
            out.append('<p class="cell-body memory-only">Memory only: no CPUs on this node.</p>')
        out.append("</details>")
    out.append("</div>")
    return "".join(out)
