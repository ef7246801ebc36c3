"""Paired ratios, their intervals, Holm's correction and verdicts, on data with known answers."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from vdevperf.measure import paired
from vdevperf.measure.paired import COSTLIER, FASTER, NO_DIFFERENCE, SLOWER, UNTESTED, estimate, holm, verdicts

ratios = st.lists(st.floats(min_value=0.2, max_value=5.0), min_size=2, max_size=30)


def test_the_estimate_is_a_t_interval_and_test_on_log_ratios():
    values = [1.10, 1.20, 1.00, 1.15, 1.05]
    logs = [math.log(v) for v in values]
    e = estimate("rate", values, 0.05)
    mean, se = sum(logs) / len(logs), stats.sem(logs)
    half = stats.t.ppf(0.975, len(logs) - 1) * se
    assert e.geomean == pytest.approx(math.exp(mean))
    assert e.low == pytest.approx(math.exp(mean - half)) and e.high == pytest.approx(math.exp(mean + half))
    assert e.p_value == pytest.approx(stats.ttest_1samp(logs, 0.0).pvalue)
    assert e.half_width_pct == pytest.approx(100 * (math.exp(half) - 1))


@given(ratios)
def test_the_interval_holds_the_geometric_mean_and_inverting_mirrors_it(values):
    e = estimate("rate", values, 0.05)
    assert e.low <= e.geomean * (1 + 1e-9) and e.geomean <= e.high * (1 + 1e-9)
    inverse = estimate("rate", [1 / v for v in values], 0.05)
    assert inverse.geomean == pytest.approx(1 / e.geomean, rel=1e-6)
    assert inverse.p_value == pytest.approx(e.p_value, abs=1e-9)
    assert inverse.low == pytest.approx(1 / e.high, rel=1e-6)


def test_identical_rounds_give_a_zero_width_interval():
    e = estimate("service_demand", [1.25] * 6, 0.05)
    assert e.geomean == pytest.approx(1.25) and e.half_width_pct == pytest.approx(0.0, abs=1e-9)
    assert verdicts([e], 0.05)[0].verdict == COSTLIER
    same = estimate("service_demand", [1.0] * 6, 0.05)
    assert verdicts([same], 0.05)[0].verdict == NO_DIFFERENCE


def test_one_round_cannot_be_tested():
    e = estimate("rate", [1.3], 0.05)
    assert e.p_value is None and e.half_width_pct is None
    assert verdicts([e], 0.05)[0].verdict == UNTESTED


@pytest.mark.parametrize(
    "metric, factor, word",
    [
        ("rate", 0.8, SLOWER),
        ("rate", 1.2, FASTER),
        ("service_demand", 1.2, COSTLIER),
        ("service_demand", 0.8, paired.CHEAPER),
        ("cpu_util_pct", 1.2, COSTLIER),
        ("p99_latency_us", 1.2, SLOWER),
        ("p99_latency_us", 0.8, FASTER),
    ],
)
def test_a_clear_difference_gets_the_words_diff_uses(metric, factor, word):
    rng = random.Random(7)
    e = estimate(metric, [factor * math.exp(rng.gauss(0, 0.02)) for _ in range(8)], 0.05)
    assert verdicts([e], 0.05)[0].verdict == word


def test_holm_matches_its_definition_on_a_known_case():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([None, 0.2]) == [None, 0.2]


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=20))
def test_holm_never_lowers_a_p_value_and_keeps_their_order(ps):
    adjusted = holm(ps)
    assert all(a >= p - 1e-12 and a <= 1.0 for a, p in zip(adjusted, ps, strict=True))
    ranked = sorted(zip(ps, adjusted, strict=True))
    assert all(x[1] <= y[1] + 1e-12 for x, y in zip(ranked, ranked[1:], strict=False))


def _simulated_table(rng: random.Random, cells: int, rounds: int, sigma: float, effect: float = 0.0) -> list[str]:
    estimates = [
        estimate("service_demand", [math.exp(rng.gauss(effect if i == 0 else 0.0, sigma)) for _ in range(rounds)], 0.05)
        for i in range(cells)
    ]
    return [v.verdict for v in verdicts(estimates, 0.05)]


def test_a_table_of_identical_paths_is_wrong_anywhere_in_at_most_alpha_of_runs():
    # The acceptance rule, simulated: 7 cells (2 tests x rate, CPU, demand, one p99), 8 rounds, 5 % noise.
    rng = random.Random(12)
    tables = [_simulated_table(rng, 7, 8, 0.05) for _ in range(2000)]
    false_alarm = sum(any(v != NO_DIFFERENCE for v in t) for t in tables) / len(tables)
    assert false_alarm <= 0.06
    # Without the correction the same data would mislead in about 1 - 0.95^7 = 30 % of tables.
    uncorrected = (
        sum(
            any(
                estimate("rate", [math.exp(rng.gauss(0, 0.05)) for _ in range(8)], 0.05).p_value < 0.05
                for _ in range(7)
            )
            for _ in range(500)
        )
        / 500
    )
    assert uncorrected > 0.2


def test_a_ten_percent_cost_is_found_in_nearly_every_table():
    rng = random.Random(3)
    found = sum(_simulated_table(rng, 7, 8, 0.03, effect=math.log(1.10))[0] == COSTLIER for _ in range(300))
    assert found / 300 > 0.95


@settings(max_examples=50)
@given(st.lists(st.floats(min_value=0.5, max_value=2.0), min_size=3, max_size=12))
def test_resolvable_is_at_least_the_cells_own_half_width(values):
    floor = paired.resolvable_pct(values, 0.05, 7)
    own = estimate("rate", values, 0.05).half_width_pct
    assert floor is not None and floor >= own - 1e-9
