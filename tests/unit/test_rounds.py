"""Interleaved rounds: seeded orders, one iteration per cell and round, resuming, and steal gating
through the real metric derivation fed by a fake CPU-times reader."""

from __future__ import annotations

import itertools
from dataclasses import replace

from vdevperf import bench, rounds
from vdevperf.counters import BYTES_RECEIVED, SLOTS, counter_names, slot_index
from vdevperf.measure import cpu, paired
from vdevperf.measure.endpoints import EndpointReport, Finished, Ready, SocketFacts
from vdevperf.measure.noise import FLAG_STEAL
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import Iteration, TestConfig, TestName

LABELS = [f"path{n} TCP_RR" for n in range(6)]
CFG = TestConfig(test=TestName.TCP_STREAM, duration_s=2.0)


def test_a_rounds_order_is_reproduced_from_its_seed_alone():
    first = [rounds.order(1234, r, LABELS) for r in range(8)]
    assert first == [rounds.order(1234, r, list(reversed(LABELS))) for r in range(8)]  # input order is irrelevant
    assert rounds.order(1234, 5, LABELS) == first[5]  # no need to replay rounds 0-4
    assert all(sorted(o) == sorted(LABELS) for o in first)
    assert len({tuple(o) for o in first}) > 4  # shuffled per round
    assert first != [rounds.order(99, r, LABELS) for r in range(8)]


class FakeCpu:
    """A CPU-times reader: two CPUs, each half busy in system time; ``steal`` of each window's CPU time is stolen."""

    def __init__(self, steals: list[float]) -> None:
        self.steals = iter(steals)

    def raw(self) -> RawRun:
        steal = next(self.steals)
        first = Sample(0.0, [[0.0] * len(cpu.FIELDS) for _ in range(2)], [0] * len(counter_names(1)))
        after = dict.fromkeys(cpu.FIELDS, 0.0) | {"system": 1.0 - steal, "steal": steal * 2.0, "idle": 1.0 - steal}
        counters = [0] * len(counter_names(1))
        counters[slot_index(0, "server", BYTES_RECEIVED)] = 100 * 1024 * 1024
        last = Sample(2.0, [[after[f] for f in cpu.FIELDS] for _ in range(2)], counters)
        endpoints = [
            EndpointReport(
                0,
                role,
                Ready(
                    1,
                    None,
                    (
                        0,
                        1,
                    ),
                    SocketFacts(0, 0),
                ),
                Finished({}, (0,) * len(SLOTS), migrations=0),
            )
            for role in ("client", "server")
        ]
        return RawRun(samples=[first, last], endpoints=endpoints, histograms=[])

    def measure(self) -> Iteration:
        return bench.iteration(CFG, self.raw())


def test_a_window_with_steal_above_the_limit_is_measured_again_and_counted():
    fake = FakeCpu([0.30, 0.01])
    plan = rounds.Plan(max_steal_pct=5.0)
    kept = rounds.gated(fake.measure, plan)
    assert kept.metrics.steal_pct == 1.0
    assert [round(r["steal_pct"]) for r in kept.retries] == [30]
    assert FLAG_STEAL not in kept.noise["flags"]
    # Steal is not the guest's work: of 2 s x 2 CPUs, 1.98 s idle, 0.04 s stolen, 1.98 s busy.
    assert kept.metrics.cpu_util_pct == 49.5
    assert kept.retries[0]["cpu_util_pct"] < kept.metrics.cpu_util_pct  # the stolen window, not averaged in


def test_when_every_attempt_is_stolen_the_least_stolen_is_kept_and_flagged():
    fake = FakeCpu([0.30, 0.20, 0.40])
    kept = rounds.gated(fake.measure, rounds.Plan(max_steal_pct=5.0, max_retries=2))
    assert kept.metrics.steal_pct == 20.0
    assert sorted(round(r["steal_pct"]) for r in kept.retries) == [30, 40]
    assert FLAG_STEAL in kept.noise["flags"]


def _cells(log: list[str]) -> list[rounds.Cell]:
    fake = FakeCpu(itertools.repeat(0.0))

    def measure(label: str) -> Iteration:
        log.append(label)
        return fake.measure()

    return [rounds.Cell(label, lambda label=label: measure(label)) for label in LABELS[:3]]


def test_every_cell_runs_once_per_round_in_the_seeded_order():
    log: list[str] = []
    cells = _cells(log)
    outcome = rounds.run(cells, rounds.Plan(rounds=4, seed=7))
    assert outcome.orders == [rounds.order(7, r, LABELS[:3]) for r in range(4)]
    assert log == [label for o in outcome.orders for label in o]
    assert all([it.round for it in c.iterations] == [0, 1, 2, 3] for c in cells)
    assert outcome.stopped == "4 rounds"


def test_a_resumed_run_measures_only_the_rounds_a_cell_lacks():
    log: list[str] = []
    cells = _cells(log)
    rounds.run(cells, rounds.Plan(rounds=2, seed=7))
    del cells[1].iterations[1]  # interrupted in round 1, before this cell
    log.clear()
    rounds.run(cells, rounds.Plan(rounds=3, seed=7), first_round=1)
    assert log == [LABELS[1]] + rounds.order(7, 2, LABELS[:3])
    assert all(sorted(it.round for it in c.iterations) == [0, 1, 2] for c in cells)


def test_target_mode_stops_when_converged_and_runs_the_minimum_first():
    log: list[str] = []
    cells = _cells(log)
    calls = []
    outcome = rounds.run(cells, rounds.Plan(rounds=1, target=True), converged=lambda: calls.append(1) or True)
    assert len(outcome.orders) == rounds.MIN_TARGET_ROUNDS and outcome.stopped.startswith("target met")
    assert calls == [1]


def test_a_round_left_noisy_after_its_retries_is_left_out_of_the_ratios():
    fake = FakeCpu(itertools.repeat(0.0))

    def measured(name: str, noisy_round: int | None = None):
        iterations = []
        for r in range(4):
            it = replace(fake.measure(), round=r)
            if r == noisy_round:
                it = replace(it, noise=it.noise | {"flags": ["foreign-cpu"]})
            iterations.append(it)
        return bench.result(name, "", CFG, iterations)

    cells = paired.analyse([measured("a"), measured("b", noisy_round=2)], lambda run: run.topology, "a", 0.05)
    assert cells and all(c.rounds == (0, 1, 3) for c in cells)
    cells = paired.analyse([measured("a", noisy_round=0), measured("b")], lambda run: run.topology, "a", 0.05)
    assert all(c.rounds == (1, 2, 3) for c in cells)
