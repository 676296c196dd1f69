"""Topology diagram: collapsed cells sent without their drawing (``cell_url``) and one cell's
drawing alone (``render_cell_svg``), which is what such a cell loads when it is opened."""

from __future__ import annotations

import pytest

from hosts.diagram import render_cell_svg, render_topology_svg
from tests.unit.test_diagram import (
    big_host,
    big_host_vms,
    by_class,
    cell_details,
    load,
    parse_fragment,
)

pytestmark = pytest.mark.unit


def url_of(cell_id: int) -> str:
    return f"/hosts/hv/cells/{cell_id}/"


def bodies(root) -> dict[int, object]:
    return {
        int(details.get("data-cell")): next(
            el for el in details if "cell-body" in (el.get("class") or "")
        )
        for details in cell_details(root)
    }


def summaries(fragment: str) -> list[str]:
    return ["".join(d.find("summary").itertext()) for d in cell_details(parse_fragment(fragment))]


def test_open_cells_are_drawn_in_place_collapsed_ones_point_at_their_url() -> None:
    topology = load("x86_64-2node-64cpu-amd-smt.xml")
    root = parse_fragment(render_topology_svg(topology, [], cell_url=url_of))
    assert len(by_class(root, "thread")) == 64  # both cells open: nothing deferred
    assert not [el for el in root.iter() if el.get("hx-get")]
    root = parse_fragment(render_topology_svg(topology, [], collapse_threshold=16, cell_url=url_of))
    assert not by_class(root, "thread")
    for cell_id, body in bodies(root).items():
        assert body.get("hx-get") == url_of(cell_id)
        assert body.get("hx-trigger") == "toggle once from:closest details"
        (link,) = list(body)
        assert link.get("href") == url_of(cell_id)


def test_a_deferred_cell_loads_exactly_the_drawing_it_had_in_place() -> None:
    topology = big_host()
    vms = big_host_vms()
    inline = render_topology_svg(topology, vms)
    deferred = render_topology_svg(topology, vms, cell_url=url_of)
    assert len(deferred) < len(inline) / 5
    for cell in topology.cells:
        drawing = render_cell_svg(topology, vms, cell.id)
        if cell.cpus:
            assert f'<div class="cell-body">{drawing}</div>' in inline
            assert drawing not in deferred
        else:  # memory-only: nothing to load, shown as before
            assert f'<p class="cell-body memory-only">{drawing}</p>' in deferred
    # the summary lines stay: what a collapsed cell says before it is opened
    assert summaries(inline) == summaries(deferred)
    # the ids a loaded drawing brings are the ones it had in place (unique on the page)
    assert 'id="numa-float-3"' in render_cell_svg(topology, vms, 3)
    with pytest.raises(KeyError):
        render_cell_svg(topology, vms, 42)


def test_cell_urls_are_escaped_and_unsafe_ones_are_not_followed() -> None:
    topology = big_host()
    root = parse_fragment(render_topology_svg(topology, [], cell_url=lambda c: f'/c/{c}/?a="&b'))
    assert bodies(root)[0].get("hx-get") == '/c/0/?a="&b'
    fragment = render_topology_svg(topology, [], cell_url=lambda c: "javascript:alert(1)")
    assert "javascript:" not in fragment
    assert len(by_class(parse_fragment(fragment), "thread")) == 448  # drawn in place instead
