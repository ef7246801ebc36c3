"""Comparing two result sets, pyperf's ``compare_to`` style: pure rows, no printing.

Runs are matched by what makes them comparable: topology, test and the
options that change the figures (sizes, flows, IP version, pinning, socket
buffers, offload settings); duration, warm-up and iteration counts may
differ, and so may the engine (--engine), whose effect diff then shows.
For each metric the change is NEW relative to BASE, and Welch's t-test
over the stored iterations says whether it is significant. With a single
iteration on either side nothing can be tested: the verdict says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from vdevperf.measure.metrics import figure
from vdevperf.measure.paired import METRIC_WORDS, NO_DIFFERENCE, UNTESTED, WORSE, verdict_word
from vdevperf.model import Metrics, RunResult, RunStatus

# Config fields that do not change what is measured, only how long or how often.
_TIMING_FIELDS = {
    "duration_s",
    "warmup_s",
    "interval_s",
    "iterations_max",
    "iterations_min",
    "confidence_level_pct",
    "confidence_width_pct",
}
# Config fields of the load generator, not of the path: a native and a Python run of one path match,
# so that diff shows what the engine changed (and files from before --engine match new ones).
_GENERATOR_FIELDS = {"engine"}
# Metrics compared (their verdict words are compare's, measure.paired.METRIC_WORDS).
COMPARED: tuple[str, ...] = tuple(METRIC_WORDS)
UNTESTED_DIFF = UNTESTED.replace("round", "iteration")


def match_key(run: RunResult) -> tuple:
    """What two runs must share to be compared."""
    ignored = _TIMING_FIELDS | _GENERATOR_FIELDS
    options = tuple(sorted((k, v) for k, v in vars(run.config).items() if k not in ignored))
    offload = tuple(run.offload["requested"]) if run.offload else ()
    return (run.topology, str(run.config.test), options, offload)


def metric(run: RunResult, name: str, m: Metrics | None) -> float | None:
    """One compared metric of a run's metrics (rate and service demand in the test's units);
    None for a run without figures."""
    return None if m is None else figure(run.config.test, name, m)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p value of Welch's t-test; None with fewer than two values on a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import ttest_ind  # imported here: scipy is slow to import

    if len(set(a)) == 1 and len(set(b)) == 1:
        return 1.0 if a[0] == b[0] else 0.0
    p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return 1.0 if math.isnan(p) else p


@dataclass(frozen=True)
class Change:
    """One metric of one matched pair of runs."""

    metric: str
    base: float | None
    new: float | None
    change_pct: float | None
    p_value: float | None
    verdict: str
    regression: bool


@dataclass(frozen=True)
class DiffRow:
    """A matched pair (or a run with no partner) and its changes."""

    topology: str
    test: str
    changes: tuple[Change, ...]
    note: str = ""

    @property
    def verdict(self) -> str:
        """The verdict on the headline rate."""
        return self.changes[0].verdict if self.changes else self.note


def _change(name: str, base: RunResult, new: RunResult, alpha: float) -> Change:
    b = metric(base, name, base.metrics)
    n = metric(new, name, new.metrics)
    if b is None or n is None:
        return Change(name, b, n, None, None, "", False)
    pct = 100.0 * (n - b) / b if b else None
    samples = [[metric(r, name, it.metrics) for it in r.iterations] for r in (base, new)]
    p = welch_p(*[[v for v in s if v is not None] for s in samples])
    if p is None:
        verdict = UNTESTED_DIFF
    elif p >= alpha or n == b:
        verdict = NO_DIFFERENCE
    else:
        verdict = verdict_word(name, n / b if b else (2.0 if n > 0 else 0.5))
    return Change(name, b, n, pct, p, verdict, verdict in WORSE)


def diff(base: Sequence[RunResult], new: Sequence[RunResult], alpha: float = 0.05) -> list[DiffRow]:
    """Every run of ``new`` against its match in ``base``, then the unmatched of ``base``."""
    by_key = {match_key(r): r for r in base if r.status is RunStatus.OK}
    rows, used = [], set()
    for run in new:
        key = match_key(run)
        partner = by_key.get(key)
        if run.status is not RunStatus.OK or partner is None:
            note = "no figures in NEW" if run.status is not RunStatus.OK else "only in NEW"
            rows.append(DiffRow(run.topology, str(run.config.test), (), note))
            continue
        used.add(key)
        rows.append(
            DiffRow(run.topology, str(run.config.test), tuple(_change(name, partner, run, alpha) for name in COMPARED))
        )
    for key, run in by_key.items():
        if key not in used:
            rows.append(DiffRow(run.topology, str(run.config.test), (), "only in BASE"))
    return rows


def regressions(rows: Sequence[DiffRow], threshold_pct: float) -> list[tuple[DiffRow, Change]]:
    """Significant changes for the worse larger than ``threshold_pct``."""
    return [
        (row, c)
        for row in rows
        for c in row.changes
        if c.regression and c.change_pct is not None and abs(c.change_pct) > threshold_pct
    ]
