"""Histogram, confidence intervals and fairness, checked against hand-computed values (no root needed)."""

import math
import random

import pytest

from vdevperf.measure import histogram
from vdevperf.measure.metrics import confidence, summarize
from vdevperf.measure.stats import confidence_interval, jain_index, t_quantile
from vdevperf.model import Metrics, TestConfig, TestName


def test_every_value_falls_inside_its_bucket_and_buckets_are_narrow():
    values = list(range(0, 3000)) + [10**k + d for k in range(3, 13) for d in (-1, 0, 1)] + [2**63 - 1]
    last = -1
    for v in sorted(values):
        b = histogram.index(v)
        low, high = histogram.bounds(b)
        assert low <= v <= high
        assert b >= last and b < histogram.BUCKETS
        assert high - low <= max(0, v / 2**histogram.HALF_BITS)
        last = b


def test_percentiles_are_ordered_and_bounded_by_min_and_max():
    rng = random.Random(7)
    hist: dict[int, int] = {}
    for _ in range(20000):
        b = histogram.index(int(rng.lognormvariate(9, 1)))
        hist[b] = hist.get(b, 0) + 1
    s = histogram.summary_us(hist)
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["p99_9"] <= s["max"]
    assert s["min"] <= s["mean"] <= s["max"]


def test_percentiles_of_a_known_distribution():
    # 1000 transactions: 900 at 10 µs, 90 at 100 µs, 10 at 1000 µs.
    hist = histogram.merge(
        [{histogram.index(10_000): 900}, {histogram.index(100_000): 90}, {histogram.index(1_000_000): 10}]
    )
    s = histogram.summary_us(hist)
    assert s["p50"] == pytest.approx(10, rel=0.01)
    assert s["p90"] == pytest.approx(10, rel=0.01)
    assert s["p99"] == pytest.approx(100, rel=0.01)
    assert s["p99_9"] == pytest.approx(1000, rel=0.01)
    assert s["mean"] == pytest.approx((900 * 10 + 90 * 100 + 10 * 1000) / 1000, rel=0.01)


def test_flows_merge_by_adding_counts_not_averaging_percentiles():
    fast, slow = {histogram.index(10_000): 99}, {histogram.index(1_000_000): 1}
    merged = histogram.summary_us(histogram.merge([fast, slow]))
    assert merged["p50"] == pytest.approx(10, rel=0.01)  # an average of per-flow p50s would say ~505
    assert merged["max"] == pytest.approx(1000, rel=0.01)


def test_empty_histogram_has_no_figures():
    assert set(histogram.summary_us({}).values()) == {None}


def test_confidence_interval_matches_a_hand_computed_example():
    # mean 11, s = sqrt(2.5), t(0.975, 4) = 2.7764451: half width = 2.7764451 * 1.5811388 / sqrt(5)
    ci = confidence_interval([10, 12, 11, 13, 9], 95)
    assert ci.mean == 11
    assert ci.half_width == pytest.approx(2.7764451 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert ci.relative_half_width_pct == pytest.approx(17.8477, rel=1e-4)
    assert ci.within(36) and not ci.within(35)


def test_t_quantiles_agree_with_published_tables():
    assert t_quantile(99, 4) == pytest.approx(4.604, abs=1e-3)
    assert t_quantile(95, 9) == pytest.approx(2.262, abs=1e-3)
    assert t_quantile(90, 30) == pytest.approx(1.697, abs=1e-3)


def test_jain_index():
    assert jain_index([5, 5, 5, 5]) == pytest.approx(1.0)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)
    assert jain_index([1, 2]) == pytest.approx(9 / 10)


def _metrics(rate: float, cpu: float) -> Metrics:
    return Metrics(
        elapsed_s=1.0,
        throughput_mbps=rate,
        transactions_per_s=None,
        mean_latency_us=None,
        cpu_util_pct=cpu,
        softirq_pct=1.0,
        service_demand_us_per_kb=0.5,
        service_demand_us_per_tr=None,
    )


def test_unmet_interval_is_flagged_and_a_tight_one_is_not():
    cfg = TestConfig(
        test=TestName.TCP_STREAM, iterations_max=5, iterations_min=3, confidence_level_pct=99, confidence_width_pct=5
    )
    tight = confidence(cfg, [_metrics(1000.0 + d, 50.0 + d / 100) for d in (-1, 0, 1)])
    assert tight.met
    loose = confidence(cfg, [_metrics(r, 50.0) for r in (800.0, 1000.0, 1200.0)])
    assert not loose.met
    assert [i.met for i in loose.intervals] == [False, True]


def test_summary_of_iterations_is_their_mean():
    m = summarize(TestName.TCP_STREAM, [_metrics(900.0, 40.0), _metrics(1100.0, 60.0)], [])
    assert m.throughput_mbps == pytest.approx(1000.0) and m.cpu_util_pct == pytest.approx(50.0)
    assert m.transactions_per_s is None
