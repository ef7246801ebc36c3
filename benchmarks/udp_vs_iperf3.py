"""vdevperf UDP_STREAM against ``iperf3 -u -b 0`` on the same veth topology, in one run: datagrams
per second delivered, 1472-byte datagrams (one per frame on a 1500 MTU), sender on CPU 0 and
receiver on CPU 1 for both tools. Rounds alternate which tool goes first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, iperf3_udp_pps, require  # noqa: E402

from vdevperf import bench  # noqa: E402
from vdevperf.model import TestConfig, TestName  # noqa: E402
from vdevperf.topology.builder import build  # noqa: E402
from vdevperf.topology.spec import load_topology  # noqa: E402

DATAGRAM = 1472


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-l", type=int, default=5, help="measured seconds per round (whole seconds, as iperf3)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--topology", default="veth")
    p.add_argument("--engine", choices=("native", "python"), default="native")
    args = p.parse_args()
    require("iperf3", "iperf3")
    if args.l < 1 or args.rounds < 1:
        p.error("-l and --rounds must be at least 1")
    warmup = 1
    cfg = TestConfig(
        test=TestName.UDP_STREAM,
        duration_s=args.l,
        warmup_s=warmup,
        send_size=DATAGRAM,
        recv_size=DATAGRAM,
        client_cpu=0,
        server_cpu=1,
        engine=args.engine,
    )

    def ours() -> float:
        m = bench.measure(topo, cfg).metrics
        return (m.messages_received or 0.0) / m.elapsed_s

    with build(load_topology(args.topology)) as topo:
        alternate(
            args.rounds,
            ours,
            lambda: iperf3_udp_pps(
                topo.server.netns_path,
                topo.client.netns_path,
                topo.server.ipv4,
                args.l,
                warmup,
                DATAGRAM,
                cfg.client_cpu,
                cfg.server_cpu,
                on_spawn=topo.ledger.add_pids,
            ),
            "iperf3",
            "datagrams/s",
            f"engine {args.engine}",
        )


if __name__ == "__main__":
    main()
