"""Topology diagram: VM colours, per-CPU marks, and the SVG/HTML fragment on every fixture."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hosts.diagram import (
    CellMemory,
    DiagramVm,
    contrast_ratio,
    cpu_marks,
    render_topology_svg,
    vm_colour,
    vm_text_colour,
)
from hosts.diagram.colours import _luminance, _rgb
from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.topology import Cell, Cpu, HostTopology, parse_capabilities

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent.parent
CAPS = ROOT / "tests" / "fixtures" / "capabilities"
FIXTURES = sorted(p.name for p in CAPS.glob("*.xml"))
HOSTILE = "<script>alert(1)</script>&\"'"


def load(name: str) -> HostTopology:
    return parse_capabilities((CAPS / name).read_text())


def vm(
    name: str,
    uuid: str,
    affinity: dict[int, str],
    *,
    pinned: str | None = None,
    emulator: str | None = None,
    last: dict[int, int] | None = None,
    url: str = "/vms/1/",
) -> DiagramVm:
    return DiagramVm(
        name=name,
        uuid=uuid,
        url=url,
        vcpu_affinity={vcpu: parse_cpuset(cpus) for vcpu, cpus in affinity.items()},
        pinned_vcpus=parse_cpuset(pinned) if pinned else frozenset(),
        emulatorpin=parse_cpuset(emulator) if emulator else None,
        last_cpu=last or {},
        memory_cells=frozenset({0}),
        memory_kib=1048576,
        cross_node=False,
    )


def seed_vm() -> DiagramVm:
    # The seed: `virsh emulatorpin D 18-23`, `virsh vcpupin D 0 22`, `virsh vcpupin D 1 23`.
    return vm(
        "seed",
        "11111111-2222-3333-4444-555555555555",
        {0: "22", 1: "23"},
        pinned="0-1",
        emulator="18-23",
        last={0: 22, 1: 23},
    )


def parse_fragment(fragment: str) -> ET.Element:
    """The fragment must be well-formed XML; wrap it so several top-level nodes parse."""
    return ET.fromstring(f"<root>{fragment}</root>")


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def by_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [el for el in root.iter() if cls in (el.get("class") or "").split()]


def cell_details(root: ET.Element) -> list[ET.Element]:
    return [el for el in by_class(root, "cell") if local(el.tag) == "details"]


def threads_in(element: ET.Element) -> list[int]:
    return [int(el.get("data-cpu")) for el in by_class(element, "thread")]


# --- colours -----------------------------------------------------------------------------------


def test_colour_is_stable_and_known() -> None:
    uuid = "11111111-2222-3333-4444-555555555555"
    assert vm_colour(uuid) == vm_colour(uuid)
    assert vm_colour(uuid) == vm_colour(uuid.upper())  # uuids are case-insensitive
    assert re.fullmatch(r"#[0-9a-f]{6}", vm_colour(uuid))
    # Golden value: a change here recolours every VM in every operator's head.
    assert vm_colour(uuid) == GOLDEN_COLOUR


GOLDEN_COLOUR = "#962c91"


def test_colour_is_the_same_in_another_process_with_another_hash_seed() -> None:
    uuid = "6f1c0b7e-0000-4000-8000-000000000001"
    code = f"from hosts.diagram import vm_colour; print(vm_colour({uuid!r}))"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == vm_colour(uuid)


def test_different_vms_get_different_colours_mostly() -> None:
    colours = {vm_colour(f"00000000-0000-4000-8000-{i:012d}") for i in range(50)}
    assert len(colours) >= 45


@settings(max_examples=200, deadline=None)
@given(st.uuids())
def test_text_on_every_colour_is_readable(uuid) -> None:
    background = _luminance(_rgb(str(uuid)))
    text = 0.0 if vm_text_colour(str(uuid)) == "#000000" else 1.0
    assert contrast_ratio(background, text) >= 4.5


# --- cpu_marks ---------------------------------------------------------------------------------


def test_seed_example_on_the_24cpu_host() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    marks = cpu_marks(topology, [seed_vm()])
    assert set(marks) == topology.cpu_ids
    assert [(r.vm.name, r.vcpu) for r in marks[22].pinned] == [("seed", 0)]
    assert [(r.vm.name, r.vcpu) for r in marks[23].pinned] == [("seed", 1)]
    assert marks[22].pinned[0].last_ran_here
    assert [r.vcpu for r in marks[23].last_ran] == [1]
    assert {cpu for cpu, m in marks.items() if m.emulator} == set(range(18, 24))
    assert {cpu for cpu, m in marks.items() if m.pinned} == {22, 23}
    assert not any(m.floating for m in marks.values())
    assert not any(m.overcommitted for m in marks.values())


def test_two_vms_pinned_to_one_thread_are_overcommitted() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    other = vm("other", "99999999-0000-4000-8000-000000000000", {0: "22"}, pinned="0")
    marks = cpu_marks(topology, [seed_vm(), other])
    assert marks[22].overcommitted
    assert [r.vm.name for r in marks[22].pinned] == ["other", "seed"]  # sorted by name
    # Its sibling 10 and the neighbour 23 are not: over-commit is per thread.
    assert not marks[10].overcommitted
    assert not marks[23].overcommitted


def test_range_pins_overcommit_only_beyond_the_threads() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    two = vm("two", "aaaaaaaa-0000-4000-8000-000000000000", {0: "6-7", 1: "6-7"}, pinned="0-1")
    marks = cpu_marks(topology, [two])
    assert not marks[6].overcommitted and not marks[7].overcommitted
    three = vm(
        "three",
        "bbbbbbbb-0000-4000-8000-000000000000",
        {0: "6-7", 1: "6-7", 2: "6-7"},
        pinned="0-2",
    )
    marks = cpu_marks(topology, [three])
    assert marks[6].overcommitted and marks[7].overcommitted
    assert len(marks[6].pinned) == 3
    # One exclusive pin on 8 plus two vCPUs allowed 8-9: three vCPUs, two threads.
    mixed = vm(
        "mixed",
        "cccccccc-0000-4000-8000-000000000000",
        {0: "8", 1: "8-9", 2: "8-9", 3: "10-11"},
        pinned="0-3",
    )
    marks = cpu_marks(topology, [mixed])
    assert {cpu for cpu, m in marks.items() if m.overcommitted} == {8, 9}


def test_a_floating_vm_marks_every_cpu_it_may_use() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    floater = vm(
        "floater",
        "dddddddd-0000-4000-8000-000000000000",
        {0: "0-23", 1: "0-23"},
        last={0: 5, 1: 17},
    )
    marks = cpu_marks(topology, [floater, seed_vm()])
    assert all([v.name for v in m.floating] == ["floater"] for m in marks.values())
    assert not any(r.vm.name == "floater" for m in marks.values() for r in m.pinned)
    assert [(r.vm.name, r.vcpu) for r in marks[5].last_ran] == [("floater", 0)]
    assert [(r.vm.name, r.vcpu) for r in marks[17].last_ran] == [("floater", 1)]
    # Floating never over-commits: only pinned vCPUs count.
    assert not any(m.overcommitted for m in marks.values())


def test_cpus_not_on_the_host_are_ignored() -> None:
    topology = load("x86_64-1node-2cpu-lab.xml")
    stale = vm(
        "stale",
        "eeeeeeee-0000-4000-8000-000000000000",
        {0: "1,40"},
        pinned="0",
        emulator="0,99",
        last={0: 40},
    )
    marks = cpu_marks(topology, [stale])
    assert set(marks) == {0, 1}
    assert marks[1].pinned[0].cpuset == frozenset({1})
    assert [v.name for v in marks[0].emulator] == ["stale"]
    assert not marks[1].last_ran


# --- rendering ---------------------------------------------------------------------------------


def fixture_vms(topology: HostTopology) -> list[DiagramVm]:
    cpus = sorted(topology.cpu_ids)
    everything = ",".join(map(str, cpus))
    return [
        vm(HOSTILE, "12345678-0000-4000-8000-000000000000", {0: str(cpus[0])}, pinned="0"),
        vm("pinned", "87654321-0000-4000-8000-000000000000", {0: str(cpus[0])}, pinned="0"),
        vm("floater", "abcdef00-0000-4000-8000-000000000000", {0: everything}, last={0: cpus[-1]}),
    ]


@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_renders_one_thread_per_cpu(name: str) -> None:
    topology = load(name)
    memory = [CellMemory(c.id, c.memory_kib, c.memory_kib // 2) for c in topology.cells]
    fragment = render_topology_svg(topology, fixture_vms(topology), memory)
    root = parse_fragment(fragment)
    threads = by_class(root, "thread")
    assert sorted(threads_in(root)) == sorted(topology.cpu_ids)
    for thread in threads:
        cpu = int(thread.get("data-cpu"))
        assert int(thread.get("data-cell")) == topology.node_of(cpu)
    cells = cell_details(root)
    assert [int(c.get("data-cell")) for c in cells] == [c.id for c in topology.cells]
    for details, cell in zip(cells, topology.cells, strict=True):
        assert sorted(threads_in(details)) == sorted(cell.cpu_ids)
        summary = details.find("summary")
        assert summary is not None
        assert f"node {cell.id}" in "".join(summary.itertext())
    # Every core box holds exactly the threads topology.cores() groups together.
    cores = {
        tuple(sorted(threads_in(core))) for core in by_class(root, "core") if local(core.tag) == "g"
    }
    assert cores == {tuple(sorted(t)) for t in topology.cores().values()}
    # The first CPU is over-committed (two VMs pinned there) and says so.
    first = min(topology.cpu_ids)
    over = by_class(root, "overcommitted")
    assert [int(el.get("data-cpu")) for el in over if el.get("data-cpu")] == [first]
    assert "over-committed" in "".join(over[0].itertext())


def test_amd_siblings_n_and_n_plus_32_share_a_core_box() -> None:
    topology = load("x86_64-2node-64cpu-amd-smt.xml")
    root = parse_fragment(render_topology_svg(topology, []))
    assert len(by_class(root, "thread")) == 64
    cores = [tuple(threads_in(core)) for core in by_class(root, "core")]
    assert len(cores) == 32
    assert (0, 32) in cores
    assert all(b == a + 32 for a, b in cores)
    core0 = next(c for c in by_class(root, "core") if tuple(threads_in(c)) == (0, 32))
    assert (core0.get("data-socket"), core0.get("data-die"), core0.get("data-core")) == (
        "0",
        "0",
        "0",
    )
    assert core0.get("data-cpus") == "0,32"
    # Four dies per socket are drawn as die boxes.
    assert len(by_class(root, "die")) == 8


def test_seed_vm_on_the_24cpu_host() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    root = parse_fragment(render_topology_svg(topology, [seed_vm()]))
    thread = {int(el.get("data-cpu")): el for el in by_class(root, "thread")}
    chip = by_class(thread[22], "chip")
    assert len(chip) == 1
    assert chip[0].get("data-vm-uuid") == seed_vm().uuid
    assert chip[0].get("data-vcpu") == "0"
    assert "seed:0" in "".join(chip[0].itertext())
    assert {cpu for cpu, el in thread.items() if "emulator" in el.get("class").split()} == set(
        range(18, 24)
    )
    assert all(by_class(thread[c], "emulator-mark") for c in range(18, 24))
    assert not by_class(root, "overcommitted")
    legend = by_class(root, "numa-legend")[0]
    link = legend.find(".//a")
    assert link is not None and link.get("href") == "/vms/1/"


def test_hostile_names_are_escaped_everywhere() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    evil = DiagramVm(
        name=HOSTILE,
        uuid='"><script>alert(2)</script>',
        url="javascript:alert(3)",
        vcpu_affinity={0: frozenset({22}), 1: frozenset(range(24))},
        pinned_vcpus=frozenset({0}),
        emulatorpin=frozenset({22}),
        last_cpu={1: 3},
        memory_cells=frozenset({0}),
        memory_kib=1,
        cross_node=True,
    )
    fragment = render_topology_svg(topology, [evil, seed_vm()], id_prefix='x"><b>')
    assert "<script" not in fragment
    assert "alert(1)</" not in fragment
    assert "javascript:" not in fragment
    assert "<b>" not in fragment
    assert '&"' not in fragment
    root = parse_fragment(fragment)
    # The name is shown as text, intact, and the uuid as an attribute value, intact.
    texts = ["".join(el.itertext()) for el in root.iter() if local(el.tag) == "li"]
    assert any(HOSTILE in t for t in texts)
    assert any(el.get("data-vm-uuid") == evil.uuid for el in root.iter())
    # No link for a javascript: URL; the name is still listed.
    assert not any(el.get("href", "").startswith("javascript") for el in root.iter())


@settings(max_examples=60, deadline=None)
@given(name=st.text(max_size=40), url=st.text(max_size=30))
def test_any_name_gives_well_formed_output(name: str, url: str) -> None:
    topology = load("x86_64-1node-2cpu-lab.xml")
    diagram_vm = DiagramVm(
        name=name,
        uuid=name,
        url=url,
        vcpu_affinity={0: frozenset({0}), 1: frozenset({0, 1})},
        pinned_vcpus=frozenset({0}),
        emulatorpin=frozenset({1}),
        last_cpu={1: 1},
    )
    fragment = render_topology_svg(topology, [diagram_vm])
    root = parse_fragment(fragment)
    assert sorted(threads_in(root)) == [0, 1]
    for el in root.iter():
        assert local(el.tag) not in {"script", "iframe", "object", "embed"}
        for attr, value in el.attrib.items():
            assert not attr.lower().startswith("on")
            if attr == "href":
                assert value == url and not re.match(r"\s*[a-z]+script:", value, re.I)


def test_small_hosts_are_open_and_large_cells_collapse() -> None:
    topology = load("x86_64-2node-64cpu-amd-smt.xml")
    root = parse_fragment(render_topology_svg(topology, []))
    assert all(el.get("open") == "" for el in cell_details(root))
    root = parse_fragment(render_topology_svg(topology, [], collapse_threshold=16))
    assert not any(el.get("open") is not None for el in cell_details(root))


def test_memory_bar_and_memory_only_cell() -> None:
    topology = load("x86_64-2node-memory-only-cell.xml")
    memory = {0: CellMemory(0, 16777216, 4194304), 1: CellMemory(1, 67108864, None)}
    root = parse_fragment(render_topology_svg(topology, [], memory))
    cells = {int(el.get("data-cell")): el for el in cell_details(root)}
    summary0 = "".join(cells[0].find("summary").itertext())
    assert "12.0 GiB used, 4.0 GiB free of 16.0 GiB" in summary0
    used = by_class(cells[0], "used")[0]
    assert float(used.get("width")) == pytest.approx(140 * 0.75, abs=0.1)
    summary1 = "".join(cells[1].find("summary").itertext())
    assert "no CPUs (memory-only)" in summary1
    assert "64.0 GiB (free unknown)" in summary1
    assert "memory-only" in cells[1].get("class").split()
    assert not by_class(cells[1], "thread")


def test_laptop_host_renders_small_and_open() -> None:
    topology = load("x86_64-1node-2cpu-lab.xml")
    fragment = render_topology_svg(topology, [])
    root = parse_fragment(fragment)
    (details,) = cell_details(root)
    assert details.get("open") == ""
    svg = next(el for el in details.iter() if local(el.tag) == "svg")
    assert float(svg.get("width")) < 400
    assert "No VMs on this host." in "".join(root.itertext())


def test_vm_legend_scrolls_on_busy_hosts() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    few = [vm(f"v{i}", f"00000000-0000-4000-8000-{i:012d}", {0: "1"}) for i in range(3)]
    root = parse_fragment(render_topology_svg(topology, few))
    (legend,) = by_class(root, "numa-legend")
    assert "scrolling" not in legend.get("class")
    assert "3 VMs" in "".join(by_class(root, "numa-vms")[0].itertext())
    many = [vm(f"v{i}", f"00000000-0000-4000-8000-{i:012d}", {0: "1"}) for i in range(40)]
    root = parse_fragment(render_topology_svg(topology, many))
    (legend,) = by_class(root, "numa-legend")
    assert "scrolling" in legend.get("class").split()
    assert len(by_class(legend, "vm")) == 40
    # Every <details> is a NUMA cell (page tests rely on it), and the fragment has one root.
    fragment = render_topology_svg(topology, many)
    assert all(el.get("data-cell") for el in ET.fromstring(fragment).iter() if el.tag == "details")


def test_host_without_cells() -> None:
    topology = HostTopology((), "x86_64", None, None, None, None, None, None, None)
    root = parse_fragment(render_topology_svg(topology, []))
    assert "no NUMA topology" in "".join(root.itertext())


def big_host() -> HostTopology:
    """448 threads, 10 cells: 8 sockets x 28 cores x 2 threads, plus 2 CXL memory-only nodes.

    Linux numbering: thread 0 of core c on socket s is s*28+c, its sibling 224 + s*28 + c.
    """
    cells = []
    for node in range(10):
        cpus: list[Cpu] = []
        if node < 8:
            for core in range(28):
                first = node * 28 + core
                siblings = frozenset({first, first + 224})
                cpus += [Cpu(t, node, 0, core, siblings, node) for t in sorted(siblings)]
        distances = {
            other: 10 if other == node else (21 if (other < 8) == (node < 8) else 31)
            for other in range(10)
        }
        cells.append(Cell(node, 256 * 1048576, tuple(cpus), distances, {}))
    return HostTopology(tuple(cells), "x86_64", "Xeon", "Intel", 8, 1, 28, 2, None)


def big_host_vms() -> list[DiagramVm]:
    """120 VMs of 4 pinned vCPUs (480 on 448 threads: some wrap and over-commit), a floater."""
    return [
        vm(
            f"vm{i:03d}",
            f"00000000-0000-4000-8000-{i:012d}",
            {v: str((i * 4 + v) % 448) for v in range(4)},
            pinned="0-3",
            emulator=str((i * 4) % 448),
            last={v: (i * 4 + v) % 448 for v in range(4)},
        )
        for i in range(120)
    ] + [vm("floater", "ffffffff-0000-4000-8000-000000000000", {0: "0-447"}, last={0: 300})]


def test_448_thread_10_cell_host_renders_collapsed_in_reasonable_size() -> None:
    topology = big_host()
    assert len(topology.cpu_ids) == 448
    vms = big_host_vms()
    start = time.perf_counter()
    fragment = render_topology_svg(topology, vms)
    elapsed = time.perf_counter() - start
    root = parse_fragment(fragment)
    details = cell_details(root)
    assert len(details) == 10
    assert not any(d.get("open") is not None for d in details)  # > 4 cells: all collapsed
    assert len(by_class(root, "thread")) == 448
    assert len(by_class(root, "core")) == 224
    # The collapsed summary still says where the CPUs are and what is pinned there.
    summary0 = "".join(details[0].find("summary").itertext())
    assert "CPUs 0-27,224-251" in summary0
    assert "56 threads" in summary0
    assert "84 pinned vCPUs" in summary0  # 0-27 and 224-251, then 0-31 again
    over = {int(el.get("data-cpu")) for el in by_class(root, "overcommitted") if el.get("data-cpu")}
    assert over == set(range(32))
    assert "28 over-committed CPUs" in "".join(details[0].find("summary").itertext())
    # Reasonable: well under a megabyte and a second (measured ~0.5 MB, ~0.1 s).
    assert len(fragment) < 1_000_000, len(fragment)
    assert elapsed < 2.0
    # A cell's SVG wraps its 28 cores into rows instead of one 4600px-wide strip.
    svg = next(el for el in details[0].iter() if local(el.tag) == "svg")
    assert float(svg.get("width")) <= 1150


def test_one_cell_over_the_threshold_collapses_alone() -> None:
    topology = big_host()
    small = HostTopology(topology.cells[:2], "x86_64", None, None, None, None, None, None, None)
    root = parse_fragment(render_topology_svg(small, [], collapse_threshold=56))
    assert [d.get("open") for d in cell_details(root)] == ["", ""]
    root = parse_fragment(render_topology_svg(small, [], collapse_threshold=55))
    assert [d.get("open") for d in cell_details(root)] == [None, None]


def test_ids_stay_unique_per_cell_and_prefix() -> None:
    topology = load("x86_64-2node-24cpu-ht.xml")
    fragment = render_topology_svg(topology, [seed_vm()], id_prefix="a") + render_topology_svg(
        topology, [seed_vm()], id_prefix="b"
    )
    ids = [el.get("id") for el in parse_fragment(fragment).iter() if el.get("id")]
    assert len(ids) == len(set(ids))
