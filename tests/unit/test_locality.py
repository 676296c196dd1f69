"""vms.locality: a VM's distance-weighted memory locality, on the NUMA lab's distances (where
memory off the vCPUs' node counts nothing), on sub-NUMA clusters (where it counts partly), as
the weight per distance, and as properties over any memory split (hypothesis), plus hostile
distances and the module's purity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from vms.locality import (
    cell_weight,
    cell_weights,
    locality,
    nearest_distance,
    parse_distances,
    remote_mib,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

#: The NUMA lab (scripts/numa-lab): nodes 0 and 1 with CPUs at distance 21, node 2 memory-only
#: at distance 30 from both, as its capabilities report them.
LAB = parse_distances(
    [
        (0, {"0": 10, "1": 21, "2": 30}),
        (1, {"0": 21, "1": 10, "2": 30}),
        (2, {"0": 30, "1": 30, "2": 10}),
    ]
)


def test_everything_on_the_home_cell_is_fully_local() -> None:
    assert locality({0: 1024.0}, {0}, LAB) == 1.0


def test_memory_on_the_other_socket_or_the_memory_only_node_counts_nothing() -> None:
    # The acceptance case: vCPUs on node 0, all of the memory on node 1 (distance 21).
    assert cell_weight(1, {0}, LAB) == 0.0
    assert cell_weight(2, {0}, LAB) == 0.0
    assert locality({1: 100.0}, {0}, LAB) == 0.0
    assert locality({2: 100.0}, {0}, LAB) == 0.0
    assert locality({1: 50.0, 2: 50.0}, {0}, LAB) == 0.0


def test_the_weight_falls_linearly_from_the_local_distance_to_twice_it() -> None:
    row = {"0": 10, "1": 11, "2": 12, "3": 16, "4": 20, "5": 21, "6": 30, "7": 19}
    distances = parse_distances([(0, row)])
    weights = cell_weights(range(1, 8), {0}, distances)
    assert weights == {
        1: pytest.approx(0.9),  # a sibling sub-NUMA cluster: almost local
        2: pytest.approx(0.8),
        3: pytest.approx(0.4),
        4: 0.0,  # twice the local latency: remote
        5: 0.0,  # the lab's other socket
        6: 0.0,  # the lab's memory-only node
        7: pytest.approx(0.1),
    }


def test_the_weight_is_clamped_to_zero_and_one() -> None:
    # (2 * 10 - 5) / 10 = 1.5 and (2 * 10 - 255) / 10 = -23.5 without the clamp.
    distances = parse_distances([(0, {"0": 10, "1": 5, "2": 255})])
    assert cell_weights([1, 2], {0}, distances) == {1: 1.0, 2: 0.0}
    # A far cell takes nothing away from the memory at home (no negative weight).
    assert locality({0: 50.0, 2: 50.0}, {0}, distances) == pytest.approx(0.5)
    assert locality({2: 100.0}, {0}, distances) == 0.0


#: Two sockets of two sub-NUMA clusters each: 12 to the sibling cluster, 21 to the other socket.
SNC = parse_distances(
    [
        (0, {"0": 10, "1": 12, "2": 21, "3": 21}),
        (1, {"0": 12, "1": 10, "2": 21, "3": 21}),
        (2, {"0": 21, "1": 21, "2": 10, "3": 12}),
        (3, {"0": 21, "1": 21, "2": 12, "3": 10}),
    ]
)


def test_a_split_vm_is_the_weighted_mean_of_its_cells() -> None:
    # numalab2-remote with half its memory moved home: 50 % x 1 + 50 % x 0.
    assert locality({0: 64.0, 1: 64.0}, {0}, LAB) == pytest.approx(0.5)
    # 3/4 home, 1/4 on the memory-only node.
    assert locality({0: 300.0, 2: 100.0}, {0}, LAB) == pytest.approx(0.75)
    # Half home, a quarter on the sibling cluster (x 0.8), a quarter on the other socket.
    assert locality({0: 200.0, 1: 100.0, 2: 100.0}, {0}, SNC) == pytest.approx(0.7)
    # vCPUs on both clusters of socket 0: only the other socket's memory is remote.
    assert locality({0: 200.0, 1: 100.0, 3: 100.0}, {0, 1}, SNC) == pytest.approx(0.75)


def test_the_nearest_home_cell_decides_the_weight() -> None:
    distances = parse_distances([(0, {"0": 10, "2": 32}), (1, {"1": 10, "2": 16}), (2, {"2": 10})])
    assert cell_weight(2, {0, 1}, distances) == pytest.approx(0.4)
    assert cell_weight(2, {0}, distances) == 0.0
    assert cell_weight(2, {1, 3}, SNC) == pytest.approx(0.8)  # 12 from 3, 21 from 1


def test_the_nearest_distance_says_too_far_from_unknown() -> None:
    assert nearest_distance(2, {1, 3}, SNC) == 12.0
    assert nearest_distance(1, {0}, LAB) == 21.0  # weight 0: too far
    only_self = parse_distances([(0, {"0": 10, "1": "far"}), (1, {"1": 10})])
    assert nearest_distance(1, {0}, only_self) is None  # weight 0: not known
    assert nearest_distance(1, set(), LAB) is None


def test_a_vm_floating_over_every_cell_has_everything_home() -> None:
    assert locality({0: 10.0, 1: 500.0, 2: 3.0}, {0, 1, 2}, LAB) == 1.0


def test_no_memory_or_unknown_home_cells_mean_no_locality() -> None:
    assert locality({}, {0}, LAB) is None
    assert locality({0: 0.0, 1: 0.0}, {0}, LAB) is None
    assert locality({0: 100.0}, set(), LAB) is None
    assert locality({0: 100.0}, frozenset(), {}) is None


def test_missing_distances_give_non_home_memory_no_weight() -> None:
    assert locality({0: 100.0, 1: 100.0}, {0}, {}) == pytest.approx(0.5)
    only_self = parse_distances([(0, {"0": 10}), (1, {"1": 10})])
    assert cell_weight(1, {0}, only_self) == 0.0
    assert locality({1: 100.0}, {0}, only_self) == 0.0


def test_hostile_distances_count_as_missing_and_never_above_home() -> None:
    rows = [
        (0, {"0": 10, "1": 0, "2": -5, "3": "near", "x": 11, "4": True, "5": 5}),
        (1, {"1": 10}),
    ]
    hostile = parse_distances(rows)
    assert hostile[0] == {0: 10.0, 5: 5.0}  # zero, negative, text, bool and bad keys dropped
    assert cell_weights([1, 2, 3, 4, 5], {0}, hostile) == {1: 0, 2: 0, 3: 0, 4: 0, 5: 1.0}
    # A distance smaller than the local one does not make far memory count more than home.
    assert locality({5: 100.0}, {0}, hostile) == 1.0


def test_negative_or_broken_amounts_count_as_no_memory() -> None:
    assert locality({0: 100.0, 1: -50.0, 2: float("nan")}, {0}, LAB) == 1.0


def test_a_missing_local_distance_is_taken_as_ten() -> None:
    distances = parse_distances([(0, {"1": 15}), (1, {})])
    assert cell_weight(1, {0}, distances) == pytest.approx(0.5)
    unusable = parse_distances([(0, {"0": 0, "1": 15}), (1, {})])
    assert cell_weight(1, {0}, unusable) == pytest.approx(0.5)


def test_the_home_cells_own_distance_is_the_local_one() -> None:
    # A host reporting 20 as local: 30 is one and a half times that, (2 * 20 - 30) / 20.
    distances = parse_distances([(0, {"0": 20, "1": 30}), (1, {"1": 20})])
    assert cell_weight(1, {0}, distances) == pytest.approx(0.5)


# --- properties ---------------------------------------------------------------------------------

CELLS = st.integers(min_value=0, max_value=7)
MIB = st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False)
memory_splits = st.dictionaries(CELLS, MIB, max_size=8)
homes = st.frozensets(CELLS, max_size=8)


@st.composite
def distance_matrices(draw) -> dict[int, dict[int, float]]:
    """Any host's distances over cells 0..7: some missing, local 10, others 11..255."""
    matrix: dict[int, dict[int, float]] = {}
    for a in range(8):
        row = {}
        for b in range(8):
            if draw(st.booleans()):
                row[b] = 10.0 if a == b else float(draw(st.integers(11, 255)))
        matrix[a] = row
    return matrix


@given(memory_splits, homes, distance_matrices())
def test_locality_is_between_zero_and_one(memory, home, distances) -> None:
    value = locality(memory, home, distances)
    if value is None:
        assert not home or sum(memory.values()) <= 0
    else:
        assert 0.0 <= value <= 1.0


@given(memory_splits, homes, distance_matrices())
def test_all_memory_home_is_exactly_one(memory, home, distances) -> None:
    assume(home)
    at_home = {cell: mib for cell, mib in memory.items() if cell in home}
    assume(sum(at_home.values()) > 0)
    assert locality(at_home, home, distances) == 1.0


@given(memory_splits, homes, distance_matrices(), st.data())
def test_moving_memory_home_never_lowers_it(memory, home, distances, data) -> None:
    away = sorted(cell for cell, mib in memory.items() if cell not in home and mib > 0)
    assume(home and away)
    source = data.draw(st.sampled_from(away))
    target = data.draw(st.sampled_from(sorted(home)))
    moved = data.draw(st.floats(min_value=0, max_value=1)) * memory[source]
    after = dict(memory)
    after[source] -= moved
    after[target] = after.get(target, 0.0) + moved
    before_value, after_value = locality(memory, home, distances), locality(after, home, distances)
    assert before_value is not None and after_value is not None
    assert after_value >= before_value - 1e-9


# --- purity -------------------------------------------------------------------------------------


def test_importing_it_loads_no_django() -> None:
    """Pure algorithms have no Django imports: checked in a fresh interpreter (this one has
    Django loaded by pytest-django)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    probe = "import json, sys, vms.locality; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "vms.locality" in loaded
    assert [m for m in loaded if m.split(".")[0] in {"django", "celery"}] == []


def test_remote_memory_is_own_memory_outside_the_home_cells():
    assert remote_mib({0: 600.0, 1: 300.0, 2: 100.0}, {0}) == 400.0
    assert remote_mib({0: 600.0, 1: 300.0}, {0, 1}) == 0
    # Negative, NaN or infinite readings are not memory; unknown home cells mean "unknown".
    assert remote_mib({0: 1.0, 1: -5.0, 2: float("nan"), 3: float("inf")}, {0}) == 0
    assert remote_mib({0: 600.0, 1: 300.0}, set()) is None
