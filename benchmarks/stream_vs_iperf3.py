"""vdevperf TCP_STREAM against iperf3 on the same veth topology, in one run.

Rounds alternate which tool goes first (ABBA...), so that slow drift of the
machine hits both alike; the ratio of the medians is the figure to quote.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import iperf3_stream, require  # noqa: E402

from vdevperf import bench  # noqa: E402
from vdevperf.model import TestConfig, TestName  # noqa: E402
from vdevperf.topology.builder import build  # noqa: E402
from vdevperf.topology.spec import load_topology  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    # Whole seconds: iperf3 truncates -t and -O to integers.
    p.add_argument("-l", type=int, default=5, help="measured seconds per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--topology", default="veth")
    p.add_argument("-P", type=int, default=1, help="parallel flows for both tools (iperf3's -P)")
    args = p.parse_args()
    require("iperf3", "iperf3")
    if args.l < 1 or args.rounds < 1:
        p.error("-l and --rounds must be at least 1")
    warmup = 1
    cfg = TestConfig(test=TestName.TCP_STREAM, duration_s=args.l, warmup_s=warmup, flows=args.P)
    ours, theirs = [], []
    with build(load_topology(args.topology)) as topo:
        def run_ours() -> None:
            ours.append(bench.measure(topo, cfg).metrics.throughput_mbps)

        def run_theirs() -> None:
            theirs.append(iperf3_stream(topo.server.netns_path, topo.client.netns_path, topo.server.ipv4,
                                        args.l, warmup, parallel=args.P, on_spawn=topo.ledger.add_pids))

        for n in range(args.rounds):
            for run in ((run_ours, run_theirs) if n % 2 == 0 else (run_theirs, run_ours)):
                run()
            print(f"round {n + 1}: vdevperf {ours[-1]:,.0f}  iperf3 {theirs[-1]:,.0f}  (10^6bits/s)")
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"median: vdevperf {a:,.0f}  iperf3 {b:,.0f}  ratio vdevperf/iperf3 = {a / b:.3f}")


if __name__ == "__main__":
    main()
