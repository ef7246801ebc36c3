"""vdevperf TCP_RR against ``sockperf ping-pong --tcp`` on the same veth topology, in one run.

Both tools exchange 14-byte messages (sockperf's minimum) with one
transaction in flight, pinned both to one CPU and then across two CPUs:
placement dominates RR figures on a small VM, so each placement gets its own
ratio. Rounds alternate which tool goes first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, require, sockperf_tcp_rr  # noqa: E402

from vdevperf import bench  # noqa: E402
from vdevperf.model import TestConfig, TestName  # noqa: E402
from vdevperf.topology.builder import build  # noqa: E402
from vdevperf.topology.spec import load_topology  # noqa: E402

MESSAGE = 14
PLACEMENTS = {"same CPU": (0, 0), "across CPUs": (0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-l", type=int, default=5, help="measured seconds per round (whole seconds, as sockperf)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--topology", default="veth")
    p.add_argument("--engine", choices=("native", "python"), default="native")
    args = p.parse_args()
    require("sockperf", "sockperf")
    if args.l < 1 or args.rounds < 1:
        p.error("-l and --rounds must be at least 1")
    with build(load_topology(args.topology)) as topo:
        for label, (client_cpu, server_cpu) in PLACEMENTS.items():
            cfg = TestConfig(
                test=TestName.TCP_RR,
                duration_s=args.l,
                warmup_s=1.0,
                request_size=MESSAGE,
                response_size=MESSAGE,
                client_cpu=client_cpu,
                server_cpu=server_cpu,
                engine=args.engine,
            )
            alternate(
                args.rounds,
                lambda cfg=cfg: bench.measure(topo, cfg).metrics.transactions_per_s,
                lambda cfg=cfg: sockperf_tcp_rr(
                    topo.server.netns_path,
                    topo.client.netns_path,
                    topo.server.ipv4,
                    args.l,
                    MESSAGE,
                    cfg.client_cpu,
                    cfg.server_cpu,
                    on_spawn=topo.ledger.add_pids,
                ),
                "sockperf",
                "trans/s",
                f"{label}, engine {args.engine},",
            )


if __name__ == "__main__":
    main()
