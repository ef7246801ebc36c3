"""Statistics over repeated figures: Student's t confidence intervals, fairness.

netperf's -i/-I rule: repeat until the confidence interval at LEVEL % is
narrower than WIDTH % of the mean (that is, mean ± WIDTH/2 %), for throughput
and for CPU utilisation alike, or until the iteration limit.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def t_quantile(level_pct: float, dof: int) -> float:
    """The two-sided Student's t critical value for a LEVEL % interval with ``dof`` degrees of freedom."""
    from scipy.stats import t  # type: ignore[import-untyped]  # imported here: scipy is slow to import and only -i needs it

    return float(t.ppf(0.5 + level_pct / 200.0, dof))


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval at ``level_pct``; half_width is None for one value."""

    mean: float
    half_width: float | None
    level_pct: float
    n: int

    @property
    def relative_half_width_pct(self) -> float | None:
        """Half the interval as a percentage of the mean (netperf prints the whole width)."""
        if self.half_width is None:
            return None
        if self.mean == 0:
            return 0.0 if self.half_width == 0 else math.inf
        return 100.0 * self.half_width / abs(self.mean)

    def within(self, width_pct: float) -> bool:
        """True if the interval is no wider than ``width_pct`` % of the mean (mean ± width/2 %)."""
        rel = self.relative_half_width_pct
        return rel is not None and rel <= width_pct / 2


def confidence_interval(values: Sequence[float], level_pct: float) -> Interval:
    """Mean and Student's t confidence interval of ``values``."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, None, level_pct, 1)
    half = t_quantile(level_pct, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, half, level_pct, n)


def jain_index(values: Sequence[float]) -> float | None:
    """Jain's fairness index: 1 when all flows are equal, 1/n when one takes everything."""
    if not values:
        return None
    square_sum = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * square_sum) if square_sum else 1.0
