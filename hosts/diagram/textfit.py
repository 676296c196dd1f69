"""Room for text in a thread box: how wide a label is drawn, what fits beside the CPU id, and
the rows a cell's thread boxes stack (CPU id, emulator marks, chips, over-commit, floating).

The CPU id is what an operator looks for first, so nothing shares its space unless it fits
there: the emulator marks sit right of it only when every thread of the cell has room for
them, otherwise they get a row of their own; marks that do not fit even there are summarised
("38 emulators") and listed in full on hover and focus by the drawing.

Widths are estimated from DejaVu Sans (Debian's default sans-serif, what Chromium draws
``system-ui`` with there, and wider than the other fonts of the stack), plus a margin.
Pure Python: no Django.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Width of a thread box; the chips inside it are this minus 6.
THREAD_W = 78
#: Inner margin of a thread box, left and right.
THREAD_PAD = 4
#: Room between the CPU id and what follows it on the header row.
ID_GAP = 6
HEADER_H = 16
CHIP_H = 13
CHIP_GAP = 2
MAX_CHIP_ROWS = 3
#: A row of its own: the emulator marks (when they do not fit beside the CPU id).
EMULATOR_ROW_H = 14
#: A row of its own: the over-commit label.
OVER_H = 12
FLOAT_STRIP_H = 5

ID_FONT = 10.5  # bold
MARK_FONT = 8.5
OVER_FONT = 8  # bold
#: An emulator mark: an "E" square and the step to the next one.
BADGE_W = 11
BADGE_STEP = 12

# Advance widths in em of DejaVu Sans Book / Bold (font units / 2048, rounded up).
_BOOK = {
    **dict.fromkeys("0123456789", 0.637),
    **dict(zip("abcdefghijklmnopqrstuvwxyz", (
        0.613, 0.635, 0.550, 0.635, 0.616, 0.352, 0.635, 0.634, 0.278, 0.278, 0.579, 0.278,
        0.974, 0.634, 0.612, 0.635, 0.635, 0.411, 0.521, 0.392, 0.634, 0.592, 0.818, 0.592,
        0.592, 0.525,
    ), strict=True)),
    " ": 0.318, "+": 0.838, "-": 0.361, ".": 0.318, ",": 0.318, ":": 0.337, "\u00d7": 0.838,
}  # fmt: skip
_BOLD = {
    **dict.fromkeys("0123456789", 0.696),
    **dict(zip("abcdefghijklmnopqrstuvwxyz", (
        0.675, 0.716, 0.593, 0.716, 0.678, 0.435, 0.716, 0.712, 0.343, 0.343, 0.665, 0.343,
        1.042, 0.712, 0.687, 0.716, 0.716, 0.493, 0.595, 0.478, 0.712, 0.652, 0.924, 0.645,
        0.652, 0.582,
    ), strict=True)),
    " ": 0.348, "+": 0.838, "-": 0.415, ".": 0.380, ",": 0.380, ":": 0.400, "\u00d7": 0.838,
}  # fmt: skip
#: Anything else (capitals, other scripts): as wide as the widest capitals.
_OTHER = (0.80, 0.87)
MARGIN = 1.06


def text_width(text: str, size: float, *, bold: bool = False) -> float:
    """Pixels *text* takes at *size* px, a little more than DejaVu Sans draws it."""
    table = _BOLD if bold else _BOOK
    other = _OTHER[bold]
    return sum(table.get(ch, other) for ch in text) * size * MARGIN


def id_width(cpu_id: int) -> float:
    return text_width(str(cpu_id), ID_FONT, bold=True)


@dataclass(frozen=True)
class EmulatorFit:
    """How a thread's emulator pins are drawn in *room* pixels: badges, or a summary text."""

    badges: int
    summary: str
    width: float


def emulator_summaries(count: int) -> tuple[str, ...]:
    """The texts that stand for *count* emulator marks, longest first."""
    return (f"{count} emulators", f"{count} emu.", f"E\u00d7{count}")


def fit_emulators(count: int, room: float) -> EmulatorFit | None:
    """One "E" per VM when they fit in *room*, else the longest summary that fits; None when
    nothing does."""
    if count <= 0:
        return EmulatorFit(0, "", 0.0)
    badges = BADGE_STEP * count - (BADGE_STEP - BADGE_W)
    if badges <= room:
        return EmulatorFit(count, "", badges)
    for summary in emulator_summaries(count):
        width = text_width(summary, MARK_FONT)
        if width <= room:
            return EmulatorFit(0, summary, width)
    return None


def inline_room(cpu_id: int) -> float:
    """Room right of the CPU id on the header row."""
    return THREAD_W - 2 * THREAD_PAD - id_width(cpu_id) - ID_GAP


ROW_ROOM = THREAD_W - 2 * THREAD_PAD


def _fits_inline(count: int, room: float) -> bool:
    """Beside the CPU id go the badges, or the plain summary; the terse ones ("38 emu.") only
    where there is no other way, on a row of their own."""
    fit = fit_emulators(count, room)
    return fit is not None and (fit.badges > 0 or fit.summary in ("", emulator_summaries(count)[0]))


@dataclass(frozen=True)
class ThreadRows:
    """Where each row of a cell's thread boxes starts; one layout for the whole cell, so its
    grid stays even."""

    #: The emulator marks' own row (None: they fit beside the CPU id, or there are none).
    emulator_y: float | None
    chips_y: float
    chip_rows: int
    #: The over-commit label's row (None: no thread of the cell is over-committed).
    over_y: float | None
    height: float

    def emulator_room(self, cpu_id: int) -> float:
        return ROW_ROOM if self.emulator_y is not None else inline_room(cpu_id)


def thread_rows(
    threads: Iterable[tuple[int, int]], busiest: int, *, overcommitted: bool
) -> ThreadRows:
    """The rows for a cell whose threads are (CPU id, emulator VMs pinned there) pairs, the
    busiest holding *busiest* chips."""
    inline = all(_fits_inline(count, inline_room(cpu)) for cpu, count in threads)
    y = float(HEADER_H)
    emulator_y = None
    if not inline:
        emulator_y, y = y, y + EMULATOR_ROW_H
    rows = max(1, min(busiest, MAX_CHIP_ROWS))
    chips_y = y
    y += rows * (CHIP_H + CHIP_GAP)
    over_y = None
    if overcommitted:
        over_y, y = y, y + OVER_H
    return ThreadRows(emulator_y, chips_y, rows, over_y, y + FLOAT_STRIP_H + 4)


def over_label() -> str:
    """The over-commit label, shortened when the box is too narrow for it."""
    for label in ("over-committed", "over-commit", "over"):
        if text_width(label, OVER_FONT, bold=True) <= ROW_ROOM:
            return label
    return "!"
