"""Room for text in the thread boxes (hosts.diagram.textfit): the CPU id keeps the header to
itself unless the emulator marks fit beside it; marks that do not fit are summarised, with
the full list on hover and focus. The browser tier measures the drawn result
(tests/browser/test_diagram_layout.py); these check the decisions behind it."""

from __future__ import annotations

import re

import pytest

from hosts.diagram import HALF_WIDTH, render_cell_svg, render_topology_svg
from hosts.diagram.textfit import (
    HEADER_H,
    ROW_ROOM,
    fit_emulators,
    id_width,
    inline_room,
    text_width,
    thread_rows,
)
from tests.unit.test_diagram import big_host, by_class, load, local, parse_fragment, seed_vm, vm

pytestmark = pytest.mark.unit


def dense_vms() -> list:
    """The issue's load: 300 VMs of 2 pinned vCPUs, VM i on cell i mod 8, its emulator pinned
    to the whole cell (38 or 37 emulators on every thread)."""
    topology = big_host()
    cells = [c for c in topology.cells if c.cpus]
    out = []
    for i in range(300):
        ids = sorted(cells[i % 8].cpu_ids)
        pins = {v: str(ids[(2 * (i // 8) + v) % len(ids)]) for v in range(2)}
        cpus = ",".join(str(c) for c in ids)
        out.append(
            vm(
                f"dense-vm{i:03d}",
                f"00000000-0000-4000-8000-{i:012d}",
                pins,
                pinned="0-1",
                emulator=cpus,
            )
        )
    return out


def translate_y(element) -> float:
    return float(re.search(r"translate\([^,]+,([^)]+)\)", element.get("transform")).group(1))


def test_widths_are_at_least_what_dejavu_sans_draws() -> None:
    # DejaVu Sans Bold digits are 0.696 em: "224" at 10.5 px is 21.9 px wide
    assert id_width(224) >= 21.9
    assert text_width("38 emulators", 8.5) >= 56
    assert text_width("over-committed", 8, bold=True) >= 71.8


def test_three_emulator_marks_fit_beside_a_cpu_id_but_38_do_not() -> None:
    assert fit_emulators(3, inline_room(447)).badges == 3
    beside = fit_emulators(38, inline_room(224))
    assert beside.badges == 0 and beside.summary != "38 emulators"  # only a terse one fits
    assert thread_rows([(224, 38)], 2, overcommitted=False).emulator_y == HEADER_H
    assert thread_rows([(224, 3)], 2, overcommitted=False).emulator_y is None
    on_a_row = fit_emulators(38, ROW_ROOM)
    assert (on_a_row.badges, on_a_row.summary) == (0, "38 emulators")
    assert fit_emulators(123456, ROW_ROOM).width <= ROW_ROOM


def test_the_dense_hosts_emulators_get_their_own_row_and_a_full_list() -> None:
    topology = big_host()
    root = parse_fragment(render_cell_svg(topology, dense_vms(), 0))
    threads = by_class(root, "thread")
    assert len(threads) == 56
    for thread in threads:
        texts = [el for el in thread if local(el.tag) == "text"]
        # the header holds the CPU id alone
        assert [t.text for t in texts if float(t.get("y")) <= HEADER_H] == [thread.get("data-cpu")]
        assert not any(
            "E+" in "".join(t.itertext()) for t in thread.iter() if local(t.tag) == "text"
        )
        (summary,) = by_class(thread, "emulator-summary")
        assert translate_y(summary) >= HEADER_H
        assert summary.get("tabindex") == "0"
        label = summary.get("aria-label")
        count = int(re.match(r"emulator threads of (\d+) VMs", label).group(1))
        assert count in (37, 38)
        assert label.count("dense-vm") == count
        (title,) = [el for el in summary if local(el.tag) == "title"]
        assert title.text == label
        assert "".join(summary.itertext()).endswith(f"{count} emulators")


def test_one_emulator_stays_beside_the_cpu_id_right_of_it() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    root = parse_fragment(render_cell_svg(topology, [seed_vm()], 1))
    thread = next(t for t in by_class(root, "thread") if t.get("data-cpu") == "23")
    (mark,) = by_class(thread, "emulator-mark")
    x = float(re.search(r"translate\(([^,]+),", mark.get("transform")).group(1))
    assert translate_y(mark) < HEADER_H  # no row of its own: the header has room
    assert x >= 4 + id_width(23)
    assert not by_class(root, "emulator-summary")


def test_hidden_chips_are_counted_and_listed_for_hover_and_focus() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    crowd = [
        vm(f"c{i}", f"00000000-0000-4000-8000-{i:012d}", {0: "0"}, pinned="0") for i in range(5)
    ]
    root = parse_fragment(render_cell_svg(topology, crowd, 0))
    thread = next(t for t in by_class(root, "thread") if t.get("data-cpu") == "0")
    assert len(by_class(thread, "chip")) == 2  # three rows: two chips and the count
    (more,) = by_class(thread, "more")
    assert "".join(t.text or "" for t in more if local(t.tag) == "text") == "+3 more"
    assert more.get("tabindex") == "0"
    assert more.get("aria-label") == "3 more vCPUs here: c2:0, c3:0, c4:0"


def test_side_by_side_diagrams_wrap_at_half_width() -> None:
    topology = big_host()
    root = parse_fragment(render_topology_svg(topology, dense_vms(), wrap_width=HALF_WIDTH))
    widths = [
        float(el.get("width"))
        for el in root.iter()
        if local(el.tag) == "svg" and "cell-diagram" in (el.get("class") or "")
    ]
    assert len(widths) == 8
    assert max(widths) <= HALF_WIDTH
