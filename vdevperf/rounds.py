"""Interleaved rounds: every cell measured once per round, in a seeded shuffled order.

A comparison of paths measured one after another hands the machine's drift
to whichever path runs then. Here each round measures every cell (a path or
setting with one test) once, in an order shuffled per round from a recorded
seed, so drift and a noisy moment hit the cells at random and the per-round
ratios (see measure.paired) cancel what the round had in common.

An iteration whose window was noisy is measured again, up to
``max_retries`` times: the host stole more than ``max_steal_pct`` of the
machine, or processes outside the test used more than
noise.FOREIGN_CPU_PCT of it (machine-wide CPU figures would count their
work as the path's). The rejected attempts are counted and kept in summary,
never averaged in. If every attempt is noisy, the least noisy one is kept
and flagged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from vdevperf.measure.noise import FLAG_STEAL, FOREIGN_CPU_PCT
from vdevperf.model import Iteration

DEFAULT_ROUNDS = 8
MIN_TARGET_ROUNDS = 3
# Target mode without --max-time stops here at the latest.
MAX_TARGET_ROUNDS = 50
# Measured on the 2-vCPU guest vdevperf is developed on (benchmarks/compare_aa.py): windows under
# 5 % steal agreed within the noise of quiet ones; 10-40 % steal inflated RR service demand by up to
# 5x and cut rates by half.
DEFAULT_MAX_STEAL_PCT = 5.0
DEFAULT_MAX_RETRIES = 2


@dataclass(frozen=True)
class Plan:
    """How many rounds to run and how to treat stolen windows."""

    rounds: int = DEFAULT_ROUNDS
    seed: int = 0
    # Target mode: go on (past ``rounds``) until ``converged`` says so or ``max_time_s`` would be exceeded.
    target: bool = False
    max_time_s: float | None = None
    max_steal_pct: float = DEFAULT_MAX_STEAL_PCT
    max_retries: int = DEFAULT_MAX_RETRIES

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError("--rounds: need at least 1 round")
        if self.max_time_s is not None and self.max_time_s <= 0:
            raise ValueError("--max-time: must be positive")
        if not 0 <= self.max_steal_pct <= 100:
            raise ValueError("--max-steal: must be 0-100 %")


DEFAULT_PLAN = Plan()


def order(seed: int, round_index: int, labels: Sequence[str]) -> list[str]:
    """The order of a round: ``labels`` shuffled by a generator seeded from (seed, round) alone,
    so any round's order can be reproduced without replaying the others."""
    shuffled = sorted(labels)
    random.Random(f"{seed}/{round_index}").shuffle(shuffled)
    return shuffled


@dataclass
class Cell:
    """One thing measured each round: a label, how to measure it once, and what it has so far."""

    label: str
    measure: Callable[[], Iteration]
    iterations: list[Iteration] = field(default_factory=list)
    # A cell that needs no more rounds (run's -i/-I met) sits the rest out.
    finished: Callable[[list[Iteration]], bool] = lambda iterations: False

    def has_round(self, index: int) -> bool:
        """True if this cell already holds its iteration of round ``index`` (a resumed run)."""
        return any(it.round == index for it in self.iterations)


def _steal(it: Iteration) -> float:
    return it.metrics.steal_pct or 0.0


def _foreign(it: Iteration) -> float:
    return ((it.noise or {}).get("foreign") or {}).get("cpu_pct", 0.0)


def gated(measure: Callable[[], Iteration], plan: Plan) -> Iteration:
    """One iteration within the plan's steal limit and quiet otherwise, or the least noisy attempt."""
    attempts: list[Iteration] = []
    while True:
        it = measure()
        attempts.append(it)
        quiet = _steal(it) <= plan.max_steal_pct and _foreign(it) <= FOREIGN_CPU_PCT
        if quiet or len(attempts) > plan.max_retries:
            break
    kept = min(attempts, key=lambda a: _steal(a) + _foreign(a))
    rejected = tuple(_summary(a, plan) for a in attempts if a is not kept)
    facts = dict(kept.noise or {})
    if (kept.metrics.steal_pct or 0.0) > plan.max_steal_pct:
        facts["flags"] = [*facts.get("flags", []), FLAG_STEAL]
    facts["max_steal_pct"] = plan.max_steal_pct
    return replace(kept, retries=rejected, noise=facts)


def _summary(it: Iteration, plan: Plan) -> dict:
    m = it.metrics
    return {
        "steal_pct": m.steal_pct,
        "max_steal_pct": plan.max_steal_pct,
        "foreign_cpu_pct": _foreign(it),
        "elapsed_s": m.elapsed_s,
        "rate": m.throughput_mbps if m.throughput_mbps is not None else m.transactions_per_s,
        "cpu_util_pct": m.cpu_util_pct,
        "service_demand": (
            m.service_demand_us_per_kb if m.service_demand_us_per_kb is not None else m.service_demand_us_per_tr
        ),
    }


@dataclass
class Outcome:
    """What the rounds did: the order of each round, how many ran, and why they stopped."""

    orders: list[list[str]] = field(default_factory=list)
    stopped: str = ""
    seconds: float = 0.0


def run(
    cells: Sequence[Cell],
    plan: Plan,
    converged: Callable[[], bool] = lambda: False,
    after_round: Callable[[Outcome], None] = lambda outcome: None,
    first_round: int = 0,
    started: float | None = None,
) -> Outcome:
    """Run rounds over ``cells`` as ``plan`` says; ``after_round`` sees each finished round (store it then).

    Fixed mode runs ``plan.rounds`` rounds. Target mode runs at least ``plan.rounds`` (and at
    least MIN_TARGET_ROUNDS), then stops when ``converged()`` or when one more round would pass
    ``plan.max_time_s``. Rounds already held by a resumed cell are skipped for that cell.
    """
    outcome = Outcome()
    start = time.monotonic() if started is None else started
    labels = [c.label for c in cells]
    by_label = {c.label: c for c in cells}
    index = first_round
    minimum = max(plan.rounds, MIN_TARGET_ROUNDS) if plan.target else plan.rounds
    while True:
        elapsed = time.monotonic() - start
        if all(c.finished(c.iterations) for c in cells):
            outcome.stopped = f"every cell done after {index} rounds"
            break
        if index >= minimum:
            if not plan.target:
                outcome.stopped = f"{index} rounds"
                break
            if converged():
                outcome.stopped = f"target met after {index} rounds"
                break
            if index >= MAX_TARGET_ROUNDS:
                outcome.stopped = f"target not met after {index} rounds (the most target mode runs)"
                break
        if plan.max_time_s is not None and index > first_round:
            per_round = elapsed / (index - first_round)
            if elapsed + per_round > plan.max_time_s:
                outcome.stopped = f"--max-time {plan.max_time_s:g} s reached after {index} rounds"
                break
        this = order(plan.seed, index, labels)
        outcome.orders.append(this)
        for label in this:
            cell = by_label[label]
            if not cell.has_round(index) and not cell.finished(cell.iterations):
                cell.iterations.append(replace(gated(cell.measure, plan), round=index))
        index += 1
        outcome.seconds = time.monotonic() - start
        after_round(outcome)
    outcome.seconds = time.monotonic() - start
    return outcome
