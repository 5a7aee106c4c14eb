"""A mergeable, log-bucketed latency histogram (the HDR histogram idea, in pure Python).

Values are non-negative integers (the load test records microseconds). Values below
2**precision_bits each get their own bucket; above that, every power-of-two range is split
into 2**(precision_bits - 1) equal buckets, so a bucket is never wider than
1 / 2**(precision_bits - 1) of its lower bound. Reporting a bucket's midpoint then keeps the
relative error of any percentile at or below 1 / 2**precision_bits (0.39 % for the default
8 bits), whatever the range of values, in a few thousand buckets at most.

Two histograms with the same precision merge by adding bucket counts, which is exact:
merging the shards of a Step Functions Map fan-out gives the very histogram one client
recording every request would have built. The JSON form is sparse (only non-empty
buckets) so a shard result stays small:

    {"precision_bits": 8, "count": 3, "min": 870, "max": 12050, "sum": 14790,
     "buckets": [[110, 1], [236, 1], [1104, 1]]}
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

DEFAULT_PRECISION_BITS = 8


class Histogram:
    """Counts of integer values in log-spaced buckets, plus the exact count, min, max and sum."""

    __slots__ = ("precision_bits", "counts", "count", "min", "max", "total")

    def __init__(self, precision_bits: int = DEFAULT_PRECISION_BITS) -> None:
        if not 1 <= precision_bits <= 20:
            raise ValueError(f"precision_bits must be in 1..20, got {precision_bits}")
        self.precision_bits = precision_bits
        self.counts: dict[int, int] = {}
        self.count = 0
        self.min = 0
        self.max = 0
        self.total = 0

    # -- buckets ---------------------------------------------------------------------

    def bucket_index(self, value: int) -> int:
        """Bucket of `value`: the value itself below 2**p, else (octave, top p bits of the value)."""
        shift = value.bit_length() - self.precision_bits
        if shift <= 0:
            return value
        half = 1 << (self.precision_bits - 1)
        mantissa = value >> shift  # in [half, 2 * half)
        return (shift + 1) * half + (mantissa - half)

    def bucket_bounds(self, index: int) -> tuple[int, int]:
        """The smallest and largest value that fall into bucket `index` (inclusive)."""
        full = 1 << self.precision_bits
        if index < full:
            return index, index
        half = full >> 1
        shift = index // half - 1
        mantissa = index % half + half
        return mantissa << shift, ((mantissa + 1) << shift) - 1

    # -- recording -------------------------------------------------------------------

    def record(self, value: int, times: int = 1) -> None:
        """Count `value` (a non-negative int) `times` times."""
        if value < 0:
            raise ValueError(f"histogram values must be >= 0, got {value}")
        index = self.bucket_index(value)
        self.counts[index] = self.counts.get(index, 0) + times
        if self.count == 0:
            self.min = self.max = value
        elif value < self.min:
            self.min = value
        elif value > self.max:
            self.max = value
        self.count += times
        self.total += value * times

    def merge(self, other: Histogram) -> Histogram:
        """Add `other`'s counts into this histogram (exact) and return self."""
        if other.precision_bits != self.precision_bits:
            raise ValueError(
                f"cannot merge histograms of precision {other.precision_bits} and {self.precision_bits} bits"
            )
        if other.count == 0:
            return self
        for index, times in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + times
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = other.max if self.count == 0 else max(self.max, other.max)
        self.count += other.count
        self.total += other.total
        return self

    # -- reading ---------------------------------------------------------------------

    def percentile(self, percent: float) -> float:
        """The nearest-rank percentile (0 < percent <= 100), within 1 / 2**p of the exact one.

        Returns the midpoint of the bucket holding that rank, clamped to the exact min and max;
        0.0 for an empty histogram.
        """
        if not 0 < percent <= 100:
            raise ValueError(f"percent must be in (0, 100], got {percent}")
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(percent / 100 * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                low, high = self.bucket_bounds(index)
                return float(min(max((low + high) / 2, self.min), self.max))
        return float(self.max)  # unreachable: the counts add up to self.count

    def percentiles(self, percents: Iterable[float]) -> dict[float, float]:
        """Several percentiles in one pass over the sorted buckets."""
        return {percent: self.percentile(percent) for percent in percents}

    @property
    def mean(self) -> float:
        """Exact mean of the recorded values (the sum is kept exactly)."""
        return self.total / self.count if self.count else 0.0

    # -- JSON ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Sparse JSON form (see the module docstring)."""
        return {
            "precision_bits": self.precision_bits,
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "sum": self.total,
            "buckets": [[index, self.counts[index]] for index in sorted(self.counts)],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        """Inverse of `to_json`; checks that the counts add up so a corrupted shard is caught."""
        histogram = cls(int(data["precision_bits"]))
        for index, times in data["buckets"]:
            if int(index) < 0 or int(times) <= 0:
                raise ValueError(f"bad histogram bucket [{index}, {times}]")
            histogram.counts[int(index)] = histogram.counts.get(int(index), 0) + int(times)
        histogram.count = int(data["count"])
        histogram.min = int(data["min"])
        histogram.max = int(data["max"])
        histogram.total = int(data["sum"])
        if sum(histogram.counts.values()) != histogram.count:
            raise ValueError(
                f"histogram buckets add up to {sum(histogram.counts.values())}, but count is {histogram.count}"
            )
        return histogram

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Histogram(precision_bits={self.precision_bits}, count={self.count}, min={self.min}, max={self.max})"
