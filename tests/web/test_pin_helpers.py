"""The pin helpers of the vCPU pinning form and the guest's online commands: pure functions,
tested on the capabilities fixtures (the seed-shaped 24-CPU host and the 64-CPU AMD host with
siblings n, n+32).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from changes import forms
from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.topology import parse_capabilities
from vms.numa import guest_online_commands

pytestmark = [pytest.mark.web, pytest.mark.django_db]

CAPABILITIES = Path(__file__).parent.parent / "fixtures" / "capabilities"


def topology(fixture: str):
    return parse_capabilities((CAPABILITIES / fixture).read_text())


# --- pure pin helpers ---------------------------------------------------------------------------


def test_pin_all_into_cell_on_the_seed_host():
    topo = topology("x86_64-2node-24cpu-ht.xml")
    assert forms.pin_all_into_cell(topo, 1, 4) == dict.fromkeys(range(4), "6-11,18-23")
    assert forms.pin_all_into_cell(topo, 0, 2) == {0: "0-5,12-17", 1: "0-5,12-17"}
    with pytest.raises(KeyError, match="cell 7 is not on this host"):
        forms.pin_all_into_cell(topo, 7, 2)


def test_pin_all_into_a_memory_only_cell_is_refused():
    topo = topology("x86_64-2node-memory-only-cell.xml")
    with pytest.raises(ValueError, match="memory only"):
        forms.pin_all_into_cell(topo, 1, 2)


def test_one_vcpu_per_core_siblings_last_on_the_seed_host():
    topo = topology("x86_64-2node-24cpu-ht.xml")  # siblings n, n+12
    pins = forms.one_vcpu_per_core(topo, 4)
    assert pins == {0: "0", 1: "1", 2: "2", 3: "3"}
    # all 24 threads: the 12 cores' first threads, then their siblings
    order = [int(forms.one_vcpu_per_core(topo, 24)[v]) for v in range(24)]
    assert order == list(range(12)) + list(range(12, 24))
    # within cell 1 (the seed's node: CPUs 6-11 and 18-23)
    in_cell = forms.one_vcpu_per_core(topo, 8, cell_id=1)
    assert [in_cell[v] for v in range(8)] == ["6", "7", "8", "9", "10", "11", "18", "19"]
    # more vCPUs than threads wraps around (the preview warns about the shared CPUs)
    wrapped = forms.one_vcpu_per_core(topo, 14, cell_id=1)
    assert wrapped[12] == "6" and wrapped[13] == "7"


def test_one_vcpu_per_core_on_the_64_cpu_amd_host():
    topo = topology("x86_64-2node-64cpu-amd-smt.xml")  # siblings n, n+32
    pins = forms.one_vcpu_per_core(topo, 64)
    order = [int(pins[v]) for v in range(64)]
    assert order[:32] == list(range(32))
    assert order[32:] == list(range(32, 64))
    # no two of the first 32 vCPUs share a core
    first = [topo.cpu(cpu).siblings for cpu in order[:32]]
    assert len(set(first)) == 32
    cell1 = forms.one_vcpu_per_core(topo, 20, cell_id=1)
    assert [int(cell1[v]) for v in range(20)] == [*range(16, 32), 48, 49, 50, 51]
    assert forms.cells_of(topo, parse_cpuset("16-31,48-51")) == {1}


@pytest.mark.parametrize("fixture", sorted(p.name for p in CAPABILITIES.glob("*.xml")))
def test_helpers_only_use_cpus_of_the_host(fixture):
    topo = topology(fixture)
    cores = len(topo.cores())
    pins = forms.one_vcpu_per_core(topo, cores)
    cpus = [int(c) for c in pins.values()]
    assert set(cpus) <= topo.cpu_ids
    assert len({topo.cpu(c).siblings for c in cpus}) == len(cpus)  # one per core
    for cell in topo.cells:
        if cell.cpu_ids:
            for cpuset in forms.pin_all_into_cell(topo, cell.id, 3).values():
                assert parse_cpuset(cpuset) == cell.cpu_ids


def test_guest_online_commands():
    assert guest_online_commands([3, 2]) == [
        "echo 1 > /sys/devices/system/cpu/cpu2/online",
        "echo 1 > /sys/devices/system/cpu/cpu3/online",
    ]
    assert guest_online_commands([3], online=False) == [
        "echo 0 > /sys/devices/system/cpu/cpu3/online"
    ]
