"""vdevperf TCP_STREAM against iperf3 on the same veth topology, in one run; with --udp, UDP_STREAM
against ``iperf3 -u -b 0`` in datagrams received per second (1472 B, as the issue's acceptance).

Rounds alternate which tool goes first (ABBA...), so that slow drift of the
machine hits both alike; the ratio of the medians is the figure to quote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, iperf3_stream, require  # noqa: E402

from vdevperf import bench  # noqa: E402
from vdevperf.model import TestConfig, TestName  # noqa: E402
from vdevperf.topology.builder import build  # noqa: E402
from vdevperf.topology.spec import load_topology  # noqa: E402

UDP_SIZE = 1472  # one unfragmented datagram on a 1500 MTU


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    # Whole seconds: iperf3 truncates -t and -O to integers.
    p.add_argument("-l", type=int, default=5, help="measured seconds per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--topology", default="veth")
    p.add_argument("-P", type=int, default=1, help="parallel flows for both tools (iperf3's -P)")
    p.add_argument("--udp", action="store_true", help="UDP_STREAM 1472 B vs iperf3 -u, datagrams/s received")
    p.add_argument("-T", type=int, nargs=2, metavar=("CLIENT", "SERVER"), help="pin both tools' ends")
    p.add_argument("--engine", choices=("native", "python"), default="native", help="vdevperf's loops")
    args = p.parse_args()
    require("iperf3", "iperf3")
    if args.l < 1 or args.rounds < 1:
        p.error("-l and --rounds must be at least 1")
    warmup = 1
    cpus = tuple(args.T) if args.T else (None, None)
    size = UDP_SIZE if args.udp else None
    cfg = TestConfig(
        test=TestName.UDP_STREAM if args.udp else TestName.TCP_STREAM,
        duration_s=args.l,
        warmup_s=warmup,
        flows=args.P,
        client_cpu=cpus[0],
        server_cpu=cpus[1],
        engine=args.engine,
        **({"send_size": UDP_SIZE} if args.udp else {}),
    )

    def ours() -> float:
        m = bench.measure(topo, cfg).metrics
        return m.messages_received / m.elapsed_s if args.udp else m.throughput_mbps

    with build(load_topology(args.topology)) as topo:
        alternate(
            args.rounds,
            ours,
            lambda: iperf3_stream(
                topo.server.netns_path,
                topo.client.netns_path,
                topo.server.ipv4,
                args.l,
                warmup,
                parallel=args.P,
                on_spawn=topo.ledger.add_pids,
                udp_size=size,
                cpus=cpus,
            ),
            "iperf3",
            "datagrams/s" if args.udp else "10^6bits/s",
            f"engine {args.engine}",
        )


if __name__ == "__main__":
    main()
