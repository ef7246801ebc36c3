"""Which endpoint placement gives compare the smallest round-to-round spread on this machine?

Two identical veth paths (an A/A pair) are built at once and measured in
interleaved rounds, every (placement, test, path) once per round in a
shuffled order. For each placement and test it prints, over the rounds:

- the spread of the raw figure (coefficient of variation of rate and of
  service demand), what a comparison across separate runs suffers;
- the spread of the paired log ratio path/copy (its standard deviation, in
  %), what compare's paired ratios suffer; this decides the default;
- the median steal during the windows.

Each window goes through compare's noise gate (rounds.gated): a window with
steal above 5 % or other processes using CPU is measured again.

Usage: python3 benchmarks/placement.py [--rounds 6] [-l 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import sys
from pathlib import Path

from vdevperf import bench, rounds
from vdevperf.model import TestConfig, TestName
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology

PLACEMENTS: dict[str, tuple[int | None, int | None]] = {
    "unpinned": (None, None),
    "-T 0,1": (0, 1),
    "-T 1,0": (1, 0),
    "-T 0,0": (0, 0),
}
TESTS = (TestName.TCP_STREAM, TestName.TCP_RR)


def _figures(it, test: TestName) -> dict[str, float]:
    m = it.metrics
    stream = test.is_stream
    return {
        "rate": m.throughput_mbps if stream else m.transactions_per_s,
        "demand": m.service_demand_us_per_kb if stream else m.service_demand_us_per_tr,
        "steal": m.steal_pct or 0.0,
    }


def _cv(values: list[float]) -> float:
    return 100 * statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else math.nan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("-l", type=float, default=3.0, help="measured seconds per iteration")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args()
    spec = load_topology("veth")
    copy = dataclasses.replace(spec, name="veth-copy")
    rng = random.Random(args.seed)
    got: dict[tuple[str, str, str], list[dict]] = {}
    with build(spec) as a, build(copy) as b:
        cells = [(pl, t, topo) for pl in PLACEMENTS for t in TESTS for topo in (a, b)]
        for n in range(args.rounds):
            rng.shuffle(cells)
            for placement, test, topo in cells:
                client, server = PLACEMENTS[placement]
                cfg = TestConfig(
                    test=test, duration_s=args.l, warmup_s=args.warmup, client_cpu=client, server_cpu=server
                )
                it = rounds.gated(lambda topo=topo, cfg=cfg: bench.iterate(topo, cfg), rounds.DEFAULT_PLAN)
                figures = _figures(it, test) | {"retries": len(it.retries), "flags": it.noise["flags"]}
                got.setdefault((placement, str(test), topo.spec.name), []).append(figures)
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(
        f"{'placement':10} {'test':11} {'rate':>10} {'CV rate':>8} {'CV dem':>7} {'sd log-ratio rate':>18} "
        f"{'sd log-ratio dem':>17} {'steal':>6}"
    )
    for placement in PLACEMENTS:
        for test in TESTS:
            one, two = got[(placement, str(test), "veth")], got[(placement, str(test), "veth-copy")]
            lr_rate = [100 * math.log(x["rate"] / y["rate"]) for x, y in zip(one, two, strict=True)]
            lr_dem = [100 * math.log(x["demand"] / y["demand"]) for x, y in zip(one, two, strict=True)]
            print(
                f"{placement:10} {test!s:11} {statistics.median(f['rate'] for f in one + two):10,.0f} "
                f"{_cv([f['rate'] for f in one + two]):8.1f} {_cv([f['demand'] for f in one + two]):7.1f} "
                f"{statistics.stdev(lr_rate):18.1f} {statistics.stdev(lr_dem):17.1f} "
                f"{statistics.median(f['steal'] for f in one + two):6.1f}"
            )
    if args.json:
        args.json.write_text(json.dumps({"|".join(k): v for k, v in got.items()}, indent=1))


if __name__ == "__main__":
    main()
