"""Latency histogram with bounded memory: HDR-style log-linear buckets over nanoseconds.

Values below 2**SUB_BITS ns get a bucket each; above, every power of two is
split into 2**(SUB_BITS-1) equal buckets, so a bucket is at most 1/2**(SUB_BITS-1)
of its value wide (0.8 % with SUB_BITS = 8). The index of a value is two
integer operations, cheap enough for the RR loops to compute inline:

    m = v.bit_length()
    index = v if m <= SUB_BITS else ((m - SUB_BITS) << HALF_BITS) + (v >> (m - SUB_BITS))

Counts live in int64 arrays (shared memory during a run), so merging flows is
adding arrays and a window is the difference of two snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SUB_BITS = 8
HALF_BITS = SUB_BITS - 1
# Enough buckets for any non-negative int64, so the inlined index never needs a bounds check.
BUCKETS = ((64 - SUB_BITS) << HALF_BITS) + (1 << SUB_BITS)


def index(value_ns: int) -> int:
    """The bucket of a latency in ns (the RR loops inline this)."""
    v = max(value_ns, 0)
    m = v.bit_length()
    return v if m <= SUB_BITS else ((m - SUB_BITS) << HALF_BITS) + (v >> (m - SUB_BITS))


def bounds(bucket: int) -> tuple[int, int]:
    """The lowest and highest ns value that falls in ``bucket``."""
    if bucket < (1 << SUB_BITS):
        return bucket, bucket
    shift = (bucket >> HALF_BITS) - 1
    mantissa = bucket - (shift << HALF_BITS)
    return mantissa << shift, ((mantissa + 1) << shift) - 1


def midpoint_ns(bucket: int) -> float:
    """The value reported for every count in ``bucket``."""
    low, high = bounds(bucket)
    return (low + high) / 2


def sparse(counts: Iterable[int]) -> dict[int, int]:
    """The non-empty buckets of a dense count array, for storage."""
    return {i: c for i, c in enumerate(counts) if c}


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """The sum of sparse histograms (flows merged, not their percentiles averaged)."""
    merged: dict[int, int] = {}
    for hist in histograms:
        for bucket, count in hist.items():
            merged[int(bucket)] = merged.get(int(bucket), 0) + count
    return merged


def summary_us(hist: Mapping[int, int]) -> dict[str, float | None]:
    """Mean, min, p50, p90, p99, p99.9 and max in µs; all None for an empty histogram.

    Percentiles are the midpoints of their buckets (nearest-rank), min and max
    the outer bounds of the lowest and highest bucket, so min <= p50 <= ... <= max.
    """
    keys = ("mean", "min", "p50", "p90", "p99", "p99_9", "max")
    items = sorted((int(b), c) for b, c in hist.items() if c)
    total = sum(c for _, c in items)
    if not total:
        return dict.fromkeys(keys)
    out = {
        "mean": sum(midpoint_ns(b) * c for b, c in items) / total / 1e3,
        "min": bounds(items[0][0])[0] / 1e3,
        "max": bounds(items[-1][0])[1] / 1e3,
    }
    for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)):
        out[key] = _rank_us(items, total, q)
    return {k: out[k] for k in keys}


def _rank_us(items: list[tuple[int, int]], total: int, q: float) -> float:
    """The nearest-rank ``q`` quantile of sorted non-empty buckets: its bucket's midpoint in µs."""
    rank = max(1, -(-total * q // 1))  # ceil(q * total)
    seen = 0
    for bucket, count in items:
        seen += count
        if seen >= rank:
            return midpoint_ns(bucket) / 1e3
    return midpoint_ns(items[-1][0]) / 1e3


def percentile_key(p: float) -> str:
    """How a percentile is named in results and tables: 99.9 -> "99.9", 50 -> "50"."""
    return f"{p:g}"


def percentiles_us(hist: Mapping[int, int], percentiles: Iterable[float]) -> dict[str, float] | None:
    """The asked percentiles (0 < p <= 100) in µs, as summary_us computes its fixed ones; None if empty."""
    items = sorted((int(b), c) for b, c in hist.items() if c)
    total = sum(c for _, c in items)
    if not total:
        return None
    return {percentile_key(p): _rank_us(items, total, p / 100) for p in percentiles}
