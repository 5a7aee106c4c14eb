"""The load test's histogram: exact merges and a bounded percentile error."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdas.load_test.histogram import Histogram

values = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=300)


def exact_percentile(data: list[int], percent: float) -> int:
    """Nearest-rank percentile, the definition the histogram approximates."""
    ordered = sorted(data)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def histogram_of(data: list[int], precision_bits: int = 8) -> Histogram:
    histogram = Histogram(precision_bits)
    for value in data:
        histogram.record(value)
    return histogram


@settings(max_examples=200, deadline=None)
@given(values, st.sampled_from([50, 90, 95, 99, 99.9, 100]), st.integers(min_value=2, max_value=12))
def test_percentile_is_within_the_relative_error_bound(data: list[int], percent: float, bits: int) -> None:
    histogram = histogram_of(data, bits)
    exact = exact_percentile(data, percent)
    assert abs(histogram.percentile(percent) - exact) <= exact / 2**bits


@settings(max_examples=200, deadline=None)
@given(st.lists(values, min_size=1, max_size=6))
def test_merging_shards_equals_recording_everything_in_one(shards: list[list[int]]) -> None:
    merged = Histogram()
    for shard in shards:
        merged.merge(Histogram.from_json(histogram_of(shard).to_json()))
    everything = histogram_of([value for shard in shards for value in shard])
    assert merged == everything
    assert merged.count == sum(len(shard) for shard in shards)
    assert merged.min == min(min(shard) for shard in shards)
    assert merged.max == max(max(shard) for shard in shards)


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=1, max_value=12))
def test_every_value_falls_inside_its_bucket_bounds(value: int, bits: int) -> None:
    histogram = Histogram(bits)
    low, high = histogram.bucket_bounds(histogram.bucket_index(value))
    assert low <= value <= high


def test_small_values_are_exact_and_extremes_are_kept() -> None:
    histogram = histogram_of([3, 1, 2, 250, 1_000_003])
    assert histogram.percentile(20) == 1
    assert histogram.percentile(60) == 3
    assert histogram.percentile(100) == 1_000_003
    assert histogram.min == 1 and histogram.max == 1_000_003
    assert histogram.mean == pytest.approx((3 + 1 + 2 + 250 + 1_000_003) / 5)


def test_empty_histogram_reports_zero_and_merges_as_identity() -> None:
    empty = Histogram()
    assert empty.percentile(99) == 0.0 and empty.mean == 0.0
    filled = histogram_of([10, 20])
    assert Histogram().merge(filled) == filled
    assert histogram_of([10, 20]).merge(Histogram()) == filled


def test_histograms_of_different_precision_refuse_to_merge() -> None:
    with pytest.raises(ValueError, match="precision 6 and 8 bits"):
        Histogram(8).merge(Histogram(6))


def test_corrupted_json_is_rejected() -> None:
    data = histogram_of([5, 6, 7]).to_json()
    data["count"] = 4
    with pytest.raises(ValueError, match="add up to 3, but count is 4"):
        Histogram.from_json(data)
