"""The periodic sweeps' spread (numaportal.spread): stable, within the window, even."""

from __future__ import annotations

import itertools

import pytest

from numaportal import spread

pytestmark = pytest.mark.unit


def test_a_host_lands_at_the_same_phase_at_every_sweep() -> None:
    assert [spread.phase(42, 230) for _ in range(3)] == [spread.phase(42, 230)] * 3
    assert spread.phase(42, 230) != spread.phase(43, 230)


def test_every_phase_is_inside_the_window() -> None:
    phases = [spread.phase(pk, 230) for pk in range(1, 100_001)]
    assert min(phases) >= 0 and max(phases) < 230


def test_500_hosts_are_spread_evenly_not_bunched() -> None:
    """500 hosts over the sync's 230 s: about 2.2 a second. The busiest second holds at most
    3 of them and no gap is longer than 0.72 s (a blake2b hash of the ids: 8, and 2.2 s)."""
    window = 230.0
    phases = sorted(spread.phase(pk, window) for pk in range(1, 501))
    per_second = [0] * int(window)
    for offset in phases:
        per_second[int(offset)] += 1
    assert max(per_second) <= 3, max(per_second)
    gaps = [b - a for a, b in itertools.pairwise(phases)]
    assert max(gaps) < 0.75, max(gaps)


def test_hosts_added_later_or_with_gaps_in_their_ids_still_spread() -> None:
    # Ids 1000..1499 (hosts registered after others were forgotten), every other id.
    phases = sorted(spread.phase(pk, 60) for pk in range(1000, 2000, 2))
    per_second = [0] * 60
    for offset in phases:
        per_second[int(offset)] += 1
    assert max(per_second) <= 2 * 500 / 60 + 2, per_second


def test_no_window_means_at_once() -> None:
    assert spread.phase(7, 0) == 0.0
    assert spread.phase(7, -5) == 0.0


@pytest.mark.parametrize(
    ("interval", "cap", "margin", "expected"),
    [
        (300, 230, 70, 230),  # the default sync: the cap
        (300, 1000, 70, 230),  # a cap above the interval: ends one margin before the next sweep
        (120, 230, 60, 60),  # an operator shortened the interval in the admin
        (60, 30, 30, 30),  # the default sample
        (30, 30, 40, 0),  # a margin longer than the interval: no spread at all
        (300, 0, 70, 0),  # the spread switched off
    ],
)
def test_the_window_ends_a_margin_before_the_next_sweep(interval, cap, margin, expected) -> None:
    assert spread.window(interval, cap, margin) == expected
