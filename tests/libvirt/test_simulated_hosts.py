"""Simulated hosts (the fleet simulator): libvirt's test driver opening one generated host file,
with the NUMA cells and free memory its file hosts lack taken from the generated sidecars.
The URI is refused unless NUMAPORTAL_SIMULATED_HOSTS_DIR names the file's own directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.fleet.generate import FIXTURES_DIR, write_fleet, write_host
from numaportal.virt import simulated
from numaportal.virt.connection import connect
from numaportal.virt.errors import InvalidURI
from numaportal.virt.hostfacts import cells_free_memory_kib
from numaportal.virt.inventory import read_inventory
from numaportal.virt.topology import parse_capabilities
from numaportal.virt.uri import validate_uri

pytestmark = pytest.mark.libvirt


@pytest.fixture
def fleet_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    top = tmp_path / "fleet"
    top.mkdir()
    monkeypatch.setenv(simulated.ENV, str(top))
    return top


def test_a_host_file_uri_is_refused_while_simulation_is_off(tmp_path, monkeypatch):
    monkeypatch.delenv(simulated.ENV, raising=False)
    host = write_host(tmp_path, 1, 2)
    with pytest.raises(InvalidURI, match="only allowed as test:///default"):
        validate_uri(f"test://{host.path}")


def test_only_plain_files_of_the_simulated_directory_are_accepted(fleet_dir, tmp_path):
    host = write_host(fleet_dir, 1, 2)
    assert validate_uri(f"test://{host.path}") == f"test://{host.path}"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "sim-hv0001.xml").write_text(host.path.read_text())
    (fleet_dir / "link.xml").symlink_to(outside / "sim-hv0001.xml")
    for uri in (
        f"test://{outside}/sim-hv0001.xml",  # another directory
        f"test://{fleet_dir}/../elsewhere/sim-hv0001.xml",  # '..' out of it
        f"test://{fleet_dir}/sub/../sim-hv0001.xml",  # not a plain path
        f"test://{fleet_dir}/sim-hv0001.capabilities",  # not a host file
        f"test://{fleet_dir}/Sim_hv.xml",  # not a host name
        "test:///etc/passwd",
    ):
        with pytest.raises(InvalidURI):
            validate_uri(uri)
    # A symlink inside the directory is a plain name there; what it opens is the file it names,
    # which the generator never writes: the sidecars next to the link are what is read.
    assert simulated.capabilities_xml(f"test://{fleet_dir}/link.xml") is None


@pytest.mark.parametrize("index", [1, 2, 3, 4])
def test_a_simulated_host_reads_as_its_fixture_with_its_domains(fleet_dir, index):
    host = write_host(fleet_dir, index, 16)
    fixture = parse_capabilities((FIXTURES_DIR / host.fixture).read_text())
    with connect(f"test://{host.path}", readonly=True) as conn:
        inventory = read_inventory(conn)
        free = cells_free_memory_kib(conn)
    assert inventory.topology.cell_ids == fixture.cell_ids
    assert inventory.topology.cpu_ids == fixture.cpu_ids
    assert inventory.host.cpu_count == len(fixture.cpu_ids)
    assert set(free) == set(fixture.cell_ids)
    assert free == inventory.host.cells_free_memory_kib
    # Each cell's memory minus what the running domains bound to it (strict/preferred) hold.
    for cell in fixture.cells:
        assert 0 <= free[cell.id] <= cell.memory_kib
    assert len(inventory.domains) == 16
    assert {d.state for d in inventory.domains} == {"running", "paused", "shut off"}
    pinned = [d for d in inventory.domains if d.effective.vcpupin]
    assert 0 < len(pinned) < 16  # one in eight is left unpinned
    for dom in pinned:
        cells = {fixture.node_of(cpu) for pins in dom.effective.vcpupin.values() for cpu in pins}
        assert len(cells) == 1  # each pinned VM sits on one cell ...
        (cell,) = cells
        assert dom.effective.emulatorpin == fixture.cell(cell).cpu_ids  # ... emulator too
        assert dom.effective.numatune_mode in {"strict", "preferred", "interleave"}


def test_the_generated_fleet_is_the_same_for_the_same_arguments(tmp_path):
    first = write_fleet(tmp_path / "a", 3, 5)
    second = write_fleet(tmp_path / "b", 3, 5)
    assert [h.name for h in first] == ["sim-hv0001", "sim-hv0002", "sim-hv0003"]
    for a, b in zip(first, second, strict=True):
        assert a.path.read_text() == b.path.read_text()
        assert os.path.getsize(a.path.with_suffix(".freecell.json")) > 2
