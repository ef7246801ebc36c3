"""Paired ratios over interleaved rounds: is one path faster or cheaper than another?

In each round every path was measured once, close together in time, so the
ratio of a path's figure to the baseline's figure *from the same round*
cancels whatever the machine did between rounds (host steal, drift, another
tenant). The summary of those per-round ratios is their geometric mean, with
a Student's t confidence interval computed on the log ratios and mapped back
(ratios multiply, so their logs are what averages symmetrically; a 2x and a
0.5x round cancel to 1x). The verdict is a one-sample t-test of the mean log
ratio against 0.

A table asks many questions at once (every path x test x metric), so the
verdicts control the family-wise error over the whole table with Holm's
step-down method: with alpha 0.05, a table of identical paths shows any
"significant" cell at most 5 % of the time. Each cell's interval is its own
(1 - alpha) interval; a cell whose interval barely excludes 1 may therefore
still read "no significant difference" once the whole table is accounted for.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from vdevperf.measure import noise
from vdevperf.measure.metrics import figure
from vdevperf.measure.stats import t_quantile
from vdevperf.model import Iteration, RunResult, RunStatus

# Verdict words, shared with `vdevperf diff`.
FASTER, SLOWER = "faster", "slower"
CHEAPER, COSTLIER = "cheaper", "costlier"
NO_DIFFERENCE = "no significant difference"
UNTESTED = "untested (1 round)"
WORSE = frozenset({SLOWER, COSTLIER})

# Whether a higher value of a metric is better, and its verdict words (better, worse).
METRIC_WORDS: dict[str, tuple[bool, str, str]] = {
    "rate": (True, FASTER, SLOWER),
    "cpu_util_pct": (False, CHEAPER, COSTLIER),
    "service_demand": (False, CHEAPER, COSTLIER),
    "p99_latency_us": (False, FASTER, SLOWER),
}


def verdict_word(metric: str, ratio: float) -> str:
    """The word for a significant change of ``metric`` by ``ratio`` (new over base)."""
    higher_better, better, worse = METRIC_WORDS[metric]
    return better if (ratio > 1) == higher_better else worse


@dataclass(frozen=True)
class RatioEstimate:
    """One cell of a paired comparison: a metric of a path against the baseline, over rounds."""

    metric: str
    ratios: tuple[float, ...]
    geomean: float
    low: float | None
    high: float | None
    p_value: float | None

    @property
    def half_width_pct(self) -> float | None:
        """Half the interval in % of the geometric mean (the larger side: log intervals are skewed)."""
        if self.low is None or self.high is None:
            return None
        return 100.0 * max(self.high / self.geomean - 1.0, 1.0 - self.low / self.geomean)


def estimate(metric: str, ratios: Sequence[float], alpha: float) -> RatioEstimate:
    """Geometric mean of per-round ratios, its (1 - alpha) t interval on logs, and the t-test's p value."""
    logs = [math.log(r) for r in ratios]
    n = len(logs)
    if n == 0:
        raise ValueError("no ratios")
    mean = statistics.fmean(logs)
    if n == 1:
        return RatioEstimate(metric, tuple(ratios), math.exp(mean), None, None, None)
    sd = statistics.stdev(logs)
    se = sd / math.sqrt(n)
    half = t_quantile(100.0 * (1.0 - alpha), n - 1) * se
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        from scipy.stats import t  # type: ignore[import-untyped]  # imported here: scipy is slow to import

        p = float(2.0 * t.sf(abs(mean) / se, n - 1))
    return RatioEstimate(metric, tuple(ratios), math.exp(mean), math.exp(mean - half), math.exp(mean + half), p)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p values (None stays None): reject where the adjusted value is below alpha."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(tested)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Verdict:
    """A cell's estimate with its table-wide verdict."""

    estimate: RatioEstimate
    p_adjusted: float | None
    verdict: str


def verdicts(estimates: Sequence[RatioEstimate], alpha: float) -> list[Verdict]:
    """Each estimate's verdict, the family-wise error over all of them held at ``alpha`` (Holm)."""
    adjusted = holm([e.p_value for e in estimates])
    out = []
    for e, p in zip(estimates, adjusted, strict=True):
        if p is None:
            word = UNTESTED
        elif p < alpha and e.geomean != 1.0:
            word = verdict_word(e.metric, e.geomean)
        else:
            word = NO_DIFFERENCE
        out.append(Verdict(e, p, word))
    return out


# Metrics every cell is judged on; a target (--target-ci) is about the first and the third: work per
# second and CPU per unit of work. CPU utilisation is their product (so its interval follows), and
# tail latency needs far more rounds than a cost comparison to narrow.
PAIRED_METRICS: tuple[str, ...] = tuple(METRIC_WORDS)
TARGET_METRICS: tuple[str, ...] = ("rate", "service_demand")
METHOD = "geometric mean of per-round ratios to the baseline; Student's t interval and test on log ratios"
CORRECTION = "holm (family-wise error over every cell of the table)"


@dataclass(frozen=True)
class PairedCell:
    """One metric of one arm (a path, or a setting) against the baseline over the rounds both ran."""

    arm: str
    test: str
    metric: str
    rounds: tuple[int, ...]
    values: tuple[float, ...]
    baseline_values: tuple[float, ...]
    judged: Verdict

    def to_json(self) -> dict:
        """The cell as a result file stores it."""
        e = self.judged.estimate
        return {
            "arm": self.arm,
            "test": self.test,
            "metric": self.metric,
            "rounds": list(self.rounds),
            "values": list(self.values),
            "baseline_values": list(self.baseline_values),
            "ratios": list(e.ratios),
            "geomean": e.geomean,
            "low": e.low,
            "high": e.high,
            "half_width_pct": e.half_width_pct,
            "p_value": e.p_value,
            "p_adjusted": self.judged.p_adjusted,
            "verdict": self.judged.verdict,
        }


def analyse(
    runs: Sequence[RunResult],
    arm: Callable[[RunResult], str],
    baseline: str | Callable[[RunResult], str],
    alpha: float,
    pair: Callable[[RunResult], Hashable] = lambda run: run.config,
) -> list[PairedCell]:
    """Every measured run against the baseline arm's run of the same ``pair`` key (by default the same
    config), round by round, judged as one family (Holm). ``baseline`` names the baseline arm, or gives
    each run its own (a sweep over several topologies: each topology's first value). Rounds that either
    side lacks or has flagged as noisy (measure.noise), or where a figure is missing or zero, are left out."""
    baseline_of = baseline if callable(baseline) else lambda run: baseline
    measured = [r for r in runs if r.status is RunStatus.OK]
    base = {(arm(r), pair(r)): r for r in measured if arm(r) == baseline_of(r)}
    found: list[tuple[RunResult, str, list[tuple[int, float, float]]]] = []
    for run in measured:
        partner = base.get((baseline_of(run), pair(run)))
        if arm(run) == baseline_of(run) or partner is None:
            continue
        # A round where either side stayed noisy after its retries (a distorting flag) is left out.
        theirs = {it.round: it.metrics for it in partner.iterations if it.round is not None and not _flagged(it)}
        for metric in PAIRED_METRICS:
            pairs = []
            for it in run.iterations:
                if it.round not in theirs or _flagged(it):
                    continue
                ours_v, base_v = (
                    figure(run.config.test, metric, it.metrics),
                    figure(run.config.test, metric, theirs[it.round]),
                )
                if ours_v and base_v and ours_v > 0 and base_v > 0:
                    pairs.append((it.round, ours_v, base_v))
            if pairs:
                found.append((run, metric, pairs))
    judged = verdicts([estimate(metric, [v / b for _, v, b in pairs], alpha) for _, metric, pairs in found], alpha)
    return [
        PairedCell(
            arm(run),
            str(run.config.test),
            metric,
            tuple(r for r, _, _ in pairs),
            tuple(v for _, v, _ in pairs),
            tuple(b for _, _, b in pairs),
            verdict,
        )
        for (run, metric, pairs), verdict in zip(found, judged, strict=True)
    ]


def _flagged(it: Iteration) -> bool:
    return noise.distorted((it.noise or {}).get("flags"))


def converged(cells: Sequence[PairedCell], width_pct: float) -> bool:
    """True when every target metric's interval is within ±width_pct % (and there is at least one)."""
    targets = [c for c in cells if c.metric in TARGET_METRICS]
    return bool(targets) and all(
        c.judged.estimate.half_width_pct is not None and c.judged.estimate.half_width_pct <= width_pct for c in targets
    )


def resolvable_pct(ratios: Sequence[float], alpha: float, family: int) -> float | None:
    """The smallest change (in %) that an A/A cell with this round-to-round spread would call
    significant in a table of ``family`` cells: the strictest Holm step's threshold, exp(t * se) - 1."""
    if len(ratios) < 2:
        return None
    logs = [math.log(r) for r in ratios]
    se = statistics.stdev(logs) / math.sqrt(len(logs))
    return 100.0 * (math.exp(t_quantile(100.0 * (1.0 - alpha / max(family, 1)), len(logs) - 1) * se) - 1.0)
