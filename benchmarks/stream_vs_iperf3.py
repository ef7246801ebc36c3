"""vdevperf TCP_STREAM against iperf3 on the same veth topology, in one run.

Rounds alternate the two tools so that slow drift of the machine hits both
alike; the ratio of the medians is the figure to quote.
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
    p.add_argument("-l", type=float, default=5.0, help="measured seconds per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--topology", default="veth")
    args = p.parse_args()
    require("iperf3", "iperf3")
    cfg = TestConfig(test=TestName.TCP_STREAM, duration_s=args.l, warmup_s=1.0)
    ours, theirs = [], []
    with build(load_topology(args.topology)) as topo:
        for n in range(args.rounds):
            ours.append(bench.measure(topo, cfg).metrics.throughput_mbps)
            theirs.append(iperf3_stream(topo.server.netns_path, topo.client.netns_path,
                                        topo.server.ipv4, args.l, cfg.warmup_s))
            print(f"round {n + 1}: vdevperf {ours[-1]:,.0f}  iperf3 {theirs[-1]:,.0f}  (10^6bits/s)")
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"median: vdevperf {a:,.0f}  iperf3 {b:,.0f}  ratio vdevperf/iperf3 = {a / b:.3f}")


if __name__ == "__main__":
    main()
