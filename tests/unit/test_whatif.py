"""vms.whatif: where a VM's memory would be after a change (moved live, placed at boot) and the
warning when much of it stays away from its vCPUs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vms.whatif import moved_to, placed_on, size_text, stranded_text

pytestmark = pytest.mark.unit


def test_moved_to_keeps_what_is_there_and_spreads_the_rest() -> None:
    assert moved_to({0: 960.0, 1: 40.0}, {1}) == {1: 1000.0}
    assert moved_to({0: 600.0, 1: 100.0, 2: 300.0}, {1, 2}) == {1: 400.0, 2: 600.0}
    assert moved_to({0: 100.0}, set()) == {0: 100.0}
    # hostile amounts count as none
    assert moved_to({0: -5.0, 1: math.nan, 2: 10.0}, {0}) == {0: 10.0}


@given(
    memory=st.dictionaries(st.integers(0, 7), st.floats(0, 1e6), max_size=8),
    nodes=st.sets(st.integers(0, 7), min_size=1, max_size=8),
)
def test_moved_to_puts_all_of_it_on_the_nodes(memory, nodes) -> None:
    after = moved_to(memory, nodes)
    assert set(after) == nodes
    assert math.isclose(sum(after.values()), sum(memory.values()), rel_tol=1e-9, abs_tol=1e-6)


def test_placed_on_is_an_even_share_per_node() -> None:
    assert placed_on([1, 0, 1]) == {0: 1.0, 1: 1.0}


def test_size_text() -> None:
    assert (size_text(960), size_text(4096), size_text(1536)) == ("960 MiB", "4 GiB", "1.5 GiB")


def test_stranded_text() -> None:
    assert stranded_text({0: 4096.0}, {1}) == (
        "vCPUs to cell(s) 1; 100 % of its 4 GiB stays on cell(s) 0 until moved (remote memory)"
    )
    assert stranded_text({0: 960.0, 1: 40.0}, {1}, "until its next boot") == (
        "vCPUs to cell(s) 1; 96 % of its 1000 MiB stays on cell(s) 0 until its next boot "
        "(remote memory)"
    )
    # local, a little away (at most max(2 MiB, 5 %)), nothing known, no cells: no warning
    assert stranded_text({1: 1000.0}, {1}) == ""
    assert stranded_text({0: 50.0, 1: 950.0}, {1}) == ""
    assert stranded_text({}, {1}) == ""
    assert stranded_text({0: 100.0}, set()) == ""
