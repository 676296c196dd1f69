"""One NUMA cell as an inline ``<svg>``: its boxes, and on each thread the chips, emulator
marks, floating strip and over-commit label from :mod:`hosts.diagram.marks`.
"""

from __future__ import annotations

from collections.abc import Mapping

from hosts.diagram.colours import OVER_COLOUR, vm_colour, vm_text_colour
from hosts.diagram.layout import BOX_STYLE, MAX_WIDTH, Box, cell_tree, measure
from hosts.diagram.marks import CpuMarks, VcpuRef
from hosts.diagram.markup import attrs, clip, esc
from hosts.diagram.model import DiagramVm
from hosts.diagram.textfit import (
    BADGE_STEP,
    BADGE_W,
    CHIP_GAP,
    CHIP_H,
    FLOAT_STRIP_H,
    ID_FONT,
    MARK_FONT,
    OVER_FONT,
    THREAD_PAD,
    THREAD_W,
    ThreadRows,
    fit_emulators,
    over_label,
    thread_rows,
)
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import Cell, Cpu

#: Characters that fit in a chip at 9px monospace.
CHIP_CHARS = 12
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
MONO = "ui-monospace, 'DejaVu Sans Mono', monospace"


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
        return clip(f"vCPU {vcpu}", CHIP_CHARS)
    return clip(name, room) + suffix


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
        f"<g{attrs(class_=classes, data_vm_uuid=vm.uuid, data_vcpu=ref.vcpu, opacity=opacity)}"
        f' transform="translate({x:g},{y:g})">'
        f"<title>{esc(tip)}</title>"
        f"<rect{attrs(width=width, height=CHIP_H, rx=2, fill=fill, stroke=stroke)}"
        f"{attrs(stroke_width=1.2 if kind == 'running' else 0.6, stroke_dasharray=dash)}/>"
        f'<text x="3" y="9.8" font-size="9" font-family="{MONO}"{attrs(fill=text)}>'
        f"{esc(_chip_label(vm.name, ref.vcpu))}</text></g>"
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


def _pin_text(vm: DiagramVm) -> str:
    return format_cpuset(vm.emulatorpin) if vm.emulatorpin else "-"


def _focusable(classes: str, tip: str, x: float, y: float, body: str) -> str:
    """A summary mark: its full list as a tooltip (``<title>``) and, reachable with the
    keyboard, as its accessible name."""
    return (
        f"<g{attrs(class_=classes, tabindex=0, role='img', aria_label=tip)}"
        f' transform="translate({x:g},{y:g})"><title>{esc(tip)}</title>{body}</g>'
    )


def _draw_emulators(box: Box, marks: CpuMarks, layout: ThreadRows, out: list[str]) -> None:
    """One "E" per VM in its colour, right-aligned beside the CPU id or on their own row;
    a summary ("38 emulators") when they do not fit."""
    cpu = box.cpu
    assert cpu is not None
    vms = marks.emulator
    fit = fit_emulators(len(vms), layout.emulator_room(cpu.id))
    if not vms or fit is None:
        return
    top = 3.0 if layout.emulator_y is None else layout.emulator_y + 1.5
    if fit.badges:
        for i, vm in enumerate(reversed(vms)):
            x = box.w - THREAD_PAD - BADGE_STEP * i - BADGE_W
            out.append(
                f"<g{attrs(class_='emulator-mark', data_vm_uuid=vm.uuid)}"
                f' transform="translate({x:g},{top:g})">'
                f"<title>{esc(f'{vm.name}: emulator threads pinned to ' + _pin_text(vm))}</title>"
                f'<rect width="{BADGE_W}" height="11" rx="2"{attrs(fill=vm_colour(vm.uuid))}'
                f' stroke="#1d2330" stroke-width="0.6"/>'
                f'<text x="5.5" y="8.8" font-size="8.5" font-weight="700" text-anchor="middle"'
                f' font-family="{FONT}"{attrs(fill=vm_text_colour(vm.uuid))}>E</text></g>'
            )
        return
    tip = f"emulator threads of {len(vms)} VMs pinned here: " + ", ".join(vm.name for vm in vms)
    x = box.w - THREAD_PAD - fit.width if layout.emulator_y is None else THREAD_PAD
    out.append(
        _focusable(
            "emulator-summary",
            tip,
            x,
            top,
            f'<text x="0" y="8.8" font-size="{MARK_FONT}" fill="#1d2330"'
            f' font-family="{FONT}">{esc(fit.summary)}</text>',
        )
    )


def _draw_thread(box: Box, marks: CpuMarks, layout: ThreadRows, hatch: str, out: list[str]) -> None:
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
        f"<g{attrs(class_=' '.join(classes), data_cpu=cpu.id, data_cell=cpu.cell_id)}"
        f' transform="translate({box.x:g},{box.y:g})">'
        f"<title>{esc(_thread_title(cpu, marks))}</title>"
    )
    stroke, stroke_w = (OVER_COLOUR, 2.5) if marks.overcommitted else ("#8c97ab", 1)
    fill = f"url(#{hatch})" if marks.floating else "#ffffff"
    out.append(
        f"<rect{attrs(class_='thread-box', width=box.w, height=box.h, rx=3, fill=fill)}"
        f"{attrs(stroke=stroke, stroke_width=stroke_w)}/>"
        f'<text class="cpu-id" x="{THREAD_PAD}" y="12" font-size="{ID_FONT}" font-weight="700"'
        f' fill="#1d2330" font-family="{FONT}">{cpu.id}</text>'
    )
    _draw_emulators(box, marks, layout, out)

    chips = _chip_refs(marks)
    rows = layout.chip_rows
    visible = chips if len(chips) <= rows else chips[: rows - 1]
    y = layout.chips_y
    for ref, kind in visible:
        _draw_chip(ref, kind, 3, y, out)
        y += CHIP_H + CHIP_GAP
    if len(visible) < len(chips):
        hidden = chips[len(visible) :]
        tip = f"{len(hidden)} more vCPUs here: " + ", ".join(
            f"{ref.vm.name}:{ref.vcpu}" for ref, _ in hidden
        )
        out.append(
            _focusable(
                "more",
                tip,
                5,
                y,
                f'<text x="0" y="9.8" font-size="9" fill="#1d2330" font-family="{FONT}">'
                f"+{len(hidden)} more</text>",
            )
        )

    if marks.floating:
        # A strip of the floating VMs' colours along the bottom edge.
        strip_y = box.h - FLOAT_STRIP_H - 2
        segment = (box.w - 6) / min(len(marks.floating), 8)
        for i, vm in enumerate(marks.floating[:8]):
            out.append(
                f"<rect{attrs(class_='float-mark', data_vm_uuid=vm.uuid)}"
                f' x="{3 + i * segment:g}" y="{strip_y:g}" width="{segment:g}"'
                f' height="{FLOAT_STRIP_H}"{attrs(fill=vm_colour(vm.uuid))}>'
                f"<title>{esc(vm.name)} may float here</title></rect>"
            )
    if marks.overcommitted and layout.over_y is not None:
        out.append(
            f'<text class="overcommitted-label" x="{box.w / 2:g}" y="{layout.over_y + 9:g}"'
            f' font-size="{OVER_FONT}" font-weight="700" text-anchor="middle"'
            f' fill="{OVER_COLOUR}" font-family="{FONT}">{over_label()}</text>'
        )
    out.append("</g>")


def _draw_box(
    box: Box,
    marks: Mapping[int, CpuMarks],
    rows: ThreadRows,
    hatch: str,
    out: list[str],
    *,
    root: bool = False,
) -> None:
    if box.cpu is not None:
        _draw_thread(box, marks[box.cpu.id], rows, hatch, out)
        return
    pad, _, fill, stroke, dash, font = BOX_STYLE[box.kind]
    if not root:
        out.append(f"<g{attrs(class_=box.kind, **box.attrs)}")
        out.append(f' transform="translate({box.x:g},{box.y:g})">')
        out.append(
            f"<rect{attrs(width=box.w, height=box.h, rx=5, fill=fill, stroke=stroke)}"
            f"{attrs(stroke_dasharray=dash)}/>"
        )
        if box.label and font:
            out.append(
                f'<text x="{pad + 1}" y="{pad + font - 1}" font-size="{font}" fill="#4a5366"'
                f' font-family="{FONT}">{esc(box.label)}</text>'
            )
    for child in box.children:
        _draw_box(child, marks, rows, hatch, out)
    if not root:
        out.append("</g>")


def cell_svg(
    cell: Cell, marks: Mapping[int, CpuMarks], id_prefix: str, max_width: float = MAX_WIDTH
) -> str:
    """*cell* as an ``<svg>`` wrapped at *max_width*; *id_prefix* makes its hatch pattern's id
    unique on the page."""
    tree = cell_tree(cell)
    cell_marks = [marks[cpu.id] for cpu in cell.cpus]
    # One thread layout per cell keeps the grid even: enough chip rows for the busiest
    # thread, a row for the emulator marks when they do not fit beside every CPU id.
    layout = thread_rows(
        ((m.cpu_id, len(m.emulator)) for m in cell_marks),
        max((len(_chip_refs(m)) for m in cell_marks), default=0),
        overcommitted=any(m.overcommitted for m in cell_marks),
    )
    measure(tree, max_width, layout.height)
    hatch = f"{id_prefix}-float-{cell.id}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cell-diagram"'
        f' width="{tree.w:g}" height="{tree.h:g}" viewBox="0 0 {tree.w:g} {tree.h:g}"'
        f' role="img"{attrs(data_cell=cell.id, aria_label=f"NUMA node {cell.id} topology")}>'
        f'<defs><pattern{attrs(id=hatch)} width="6" height="6"'
        ' patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#ffffff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#c9d3e6" stroke-width="2.2"/>'
        "</pattern></defs>"
    ]
    _draw_box(tree, marks, layout, hatch, out, root=True)
    out.append("</svg>")
    return "".join(out)
