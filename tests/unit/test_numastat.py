"""hosts.numastat: deltas across reboots, buckets, rates and the local ratio."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hosts.numastat import (
    COUNTERS,
    EXPLANATIONS,
    Span,
    bucket_start,
    bucketize,
    chart_series,
    interval_between,
    local_ratio,
)

pytestmark = pytest.mark.unit


def counters(**values: int) -> dict[str, int]:
    base = dict.fromkeys(COUNTERS, 100)
    base.update(values)
    return base


def test_deltas_of_a_normal_interval() -> None:
    iv = interval_between(counters(numa_hit=100), counters(numa_hit=700), 60.0)
    assert not iv.reset
    assert iv.deltas["numa_hit"] == 600
    assert iv.deltas["numa_miss"] == 0


def test_a_counter_that_went_down_is_a_reset_not_a_negative_rate() -> None:
    iv = interval_between(counters(numa_hit=10_000), counters(numa_hit=50), 60.0)
    assert iv.reset
    assert iv.deltas is None


def test_a_new_boot_time_is_a_reset_even_when_counters_grew_meanwhile() -> None:
    # A host that rebooted and allocated more since than before: only btime tells.
    iv = interval_between(
        counters(numa_hit=10), counters(numa_hit=99_999), 60.0, prev_boot=1000, cur_boot=2000
    )
    assert iv.reset
    same = interval_between(
        counters(numa_hit=10), counters(numa_hit=99), 60.0, prev_boot=1000, cur_boot=1000
    )
    assert same.deltas["numa_hit"] == 89


def test_samples_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="time order"):
        interval_between(counters(), counters(), 0.0)


def test_local_ratio() -> None:
    assert local_ratio(900, 100) == pytest.approx(90.0)
    assert local_ratio(0, 0) is None  # nothing allocated: no ratio, not 0 % or 100 %
    assert local_ratio(None, 5) is None


def test_every_counter_and_the_ratio_are_explained() -> None:
    assert set(COUNTERS) | {"local_ratio"} <= set(EXPLANATIONS)
    # The kernel's meaning (Documentation/admin-guide/numastat.rst): a miss is counted on
    # the cell that *got* the memory, foreign on the cell that was *wanted*.
    assert "got it from this cell" in EXPLANATIONS["numa_miss"]
    assert "wanted memory from this cell" in EXPLANATIONS["numa_foreign"]


def test_bucketize_sums_intervals_and_skips_resets() -> None:
    spans = [
        Span(0, 0.0, 60.0, {"numa_hit": 600}),
        Span(0, 60.0, 60.0, {"numa_hit": 1200}),
        Span(0, 120.0, 60.0, {}),  # a reset: no deltas, no covered time
        Span(1, 30.0, 60.0, {"numa_hit": 60}),
    ]
    buckets = bucketize(spans, 300)
    assert buckets[(0, 0)].deltas == {"numa_hit": 1800}
    assert buckets[(0, 0)].seconds == 120.0
    assert buckets[(0, 0)].rate("numa_hit") == pytest.approx(15.0)
    assert buckets[(1, 0)].rate("numa_hit") == pytest.approx(1.0)


def test_chart_series_has_gaps_where_there_was_no_data() -> None:
    buckets = bucketize(
        [Span(0, 65.0, 60.0, {"numa_hit": 120, "local_node": 3, "other_node": 1})], 60
    )
    series = chart_series(buckets, [0], 0, 180, 60)
    assert series.times == [0, 60, 120]
    assert series.values["numa_hit"][0] == [None, 2.0, None]
    assert series.values["local_ratio"][0] == [None, 75.0, None]
    assert series.as_json()["series"]["numa_hit"]["0"] == [None, 2.0, None]


span_st = st.builds(
    Span,
    cell=st.integers(0, 3),
    start=st.floats(0, 86_400, allow_nan=False),
    seconds=st.floats(1, 600, allow_nan=False),
    deltas=st.fixed_dictionaries({"numa_hit": st.integers(0, 10**9)}),
)


@given(st.lists(span_st, max_size=60), st.sampled_from([60, 300, 900, 3600]))
def test_bucketing_loses_and_invents_nothing(spans: list[Span], bucket_s: int) -> None:
    buckets = bucketize(spans, bucket_s)
    assert sum(b.deltas["numa_hit"] for b in buckets.values()) == sum(
        s.deltas["numa_hit"] for s in spans
    )
    assert sum(b.seconds for b in buckets.values()) == pytest.approx(sum(s.seconds for s in spans))
    for (cell, start), b in buckets.items():
        assert start == bucket_start(start, bucket_s)
        assert b.cell == cell


@given(
    st.lists(st.integers(0, 10**12), min_size=2, max_size=30),
)
def test_deltas_are_never_negative(values: list[int]) -> None:
    for before, after in itertools.pairwise(values):
        iv = interval_between(counters(numa_hit=before), counters(numa_hit=after), 60.0)
        if iv.deltas is None:
            assert after < before
        else:
            assert all(v >= 0 for v in iv.deltas.values())
