"""How accurately do -b, --fq-rate and --rate hold the asked load, and what does pacing do to latency?

On the veth topology, pinned -T 0,1 (compare's default), every cell below is
measured once per round, in an order shuffled per round, each window through
compare's noise gate (steal or other processes' CPU: measured again):

- TCP_STREAM unpaced, with -b and with --fq-rate at three rates;
- UDP_STREAM with -b at three rates (sent and received);
- TCP_RR unpaced and with --rate at four rates, the last beyond the path's capacity.

It prints, per cell, the achieved rate over the asked one (median, and the
worst round), CPU utilisation and service demand; for RR cells the latency
percentiles next to the unpaced run's. A paced RR transaction is timed from
when it was due, so its latency includes the client's own wake-up lateness;
the unpaced loop times back-to-back transactions, which never sleep.

Usage: python3 benchmarks/pacing.py [--rounds 3] [-l 3] [--only stream|rr] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from vdevperf import bench, rounds
from vdevperf.model import TestConfig, TestName
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology

STREAM_RATES = (500e6, 2e9, 5e9)
UDP_RATES = (100e6, 300e6, 600e6)
# The last is beyond what a pinned veth TCP_RR does here (~14.7k/s): what overload looks like.
RR_RATES = (1000.0, 5000.0, 10000.0, 20000.0)


@dataclass(frozen=True)
class Cell:
    """One configuration measured each round."""

    label: str
    test: TestName
    asked: float | None = None  # in the test's rate units
    fields: tuple[tuple[str, float], ...] = ()


def cells() -> list[Cell]:
    found = [Cell("TCP_STREAM unpaced", TestName.TCP_STREAM), Cell("TCP_RR unpaced", TestName.TCP_RR)]
    for bps in STREAM_RATES:
        found.append(Cell(f"TCP_STREAM -b {bps / 1e9:g}G", TestName.TCP_STREAM, bps / 1e6, (("rate_bps", bps),)))
        found.append(
            Cell(f"TCP_STREAM --fq-rate {bps / 1e9:g}G", TestName.TCP_STREAM, bps / 1e6, (("fq_rate_bps", bps),))
        )
    for bps in UDP_RATES:
        found.append(Cell(f"UDP_STREAM -b {bps / 1e6:g}M", TestName.UDP_STREAM, bps / 1e6, (("rate_bps", bps),)))
    for tps in RR_RATES:
        found.append(Cell(f"TCP_RR --rate {tps:g}", TestName.TCP_RR, tps, (("rate_tps", tps),)))
    return found


def _figures(it, cell: Cell) -> dict[str, float | None]:
    m = it.metrics
    stream = cell.test.is_stream
    return {
        "rate": m.throughput_mbps if stream else m.transactions_per_s,
        "sent": m.send_throughput_mbps,
        "cpu": m.cpu_util_pct,
        "demand": m.service_demand_us_per_kb if stream else m.service_demand_us_per_tr,
        "p50": m.p50_latency_us,
        "p99": m.p99_latency_us,
        "p99_9": m.p99_9_latency_us,
        "steal": m.steal_pct,
        "retries": len(it.retries),
    }


def _median(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if r[key] is not None]
    return f"{statistics.median(values):,.1f}" if values else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("-l", type=float, default=3.0, help="measured seconds per window")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write every figure here")
    p.add_argument("--only", choices=("stream", "rr"), help="only the stream or only the RR cells")
    args = p.parse_args()
    rng = random.Random(args.seed)
    todo = [c for c in cells() if args.only is None or c.test.is_stream == (args.only == "stream")]
    got: dict[str, list[dict]] = {c.label: [] for c in todo}
    with build(load_topology("veth")) as topo:
        for n in range(args.rounds):
            rng.shuffle(todo)
            for cell in todo:
                send_size = cell.test.traits.default_send_size
                cfg = TestConfig(
                    test=cell.test,
                    duration_s=args.l,
                    warmup_s=args.warmup,
                    client_cpu=0,
                    server_cpu=1,
                    send_size=send_size,
                    **dict(cell.fields),
                )
                it = rounds.gated(lambda cfg=cfg: bench.iterate(topo, cfg), rounds.DEFAULT_PLAN)
                got[cell.label].append(_figures(it, cell))
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(
        f"{'cell':26} {'asked':>9} {'achieved':>10} {'ratio':>7} {'worst':>7} {'CPU %':>6} {'demand':>8} "
        f"{'p50 us':>8} {'p99 us':>9} {'p99.9 us':>9}"
    )
    for cell in sorted(todo, key=lambda c: (str(c.test), c.asked or 0.0, c.label)):
        rows = got[cell.label]
        rate = statistics.median(r["rate"] for r in rows)
        ratios = [r["rate"] / cell.asked for r in rows] if cell.asked else []
        worst = max(ratios, key=lambda x: abs(x - 1)) if ratios else None

        print(
            f"{cell.label:26} {'' if cell.asked is None else f'{cell.asked:,.0f}':>9} {rate:10,.1f} "
            f"{'' if not ratios else f'{statistics.median(ratios):.4f}':>7} "
            f"{'' if worst is None else f'{worst:.4f}':>7} {_median(rows, 'cpu'):>6} {_median(rows, 'demand'):>8} "
            f"{_median(rows, 'p50'):>8} {_median(rows, 'p99'):>9} {_median(rows, 'p99_9'):>9}"
        )
    if args.json:
        args.json.write_text(json.dumps(got, indent=1))


if __name__ == "__main__":
    main()
