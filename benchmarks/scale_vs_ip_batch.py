"""vdevperf's namespace creation (the `netlink` method) against `ip -batch`, in one run.

Both create N namespaces (default 1000; with --links veth a veth pair each to
a hub namespace, and --up/--addresses/--bridge as in `vdevperf scale`) in
one chunk (a single `ip -batch` for the namespaces, one for the links), then
delete them and wait for the kernel to settle before the next round. Rounds
alternate which method goes first (ABBA...), so slow drift of the machine
hits both alike; the figure to quote is the ratio of the median times,
ip-batch / vdevperf (>= 1.0: vdevperf is at least as fast).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

from vdevperf.scale.memory import check_capacity
from vdevperf.scale.methods import check_tools
from vdevperf.scale.model import Links, Method, Phase, ScaleConfig
from vdevperf.scale.runner import creation_run
from vdevperf.scale.session import Session


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3, help="rounds per method (default 3)")
    p.add_argument("--links", type=Links, choices=list(Links), default=Links.NONE)
    p.add_argument("--up", action="store_true")
    p.add_argument("--addresses", action="store_true")
    p.add_argument("--bridge", action="store_true")
    p.add_argument("--settle-timeout", type=float, default=30.0)
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    config = ScaleConfig(count=args.count, mark=args.count, methods=(Method.NETLINK, Method.IP_BATCH),
                         links=args.links, up=args.up, addresses=args.addresses, bridge=args.bridge,
                         phases=(Phase.CREATE,), settle_timeout_s=args.settle_timeout)
    check_capacity(config)
    check_tools(config.methods)
    times: dict[Method, list[float]] = {m: [] for m in config.methods}
    with Session(config) as session:
        session.open()
        for n in range(args.rounds):
            order = config.methods if n % 2 == 0 else tuple(reversed(config.methods))
            for method in order:
                run = creation_run(session, method)
                times[method].append(run.total_s)
                settled = run.teardown.settle.settled_s if run.teardown else None
                print(f"round {n + 1}: {method.value:8s} {run.total_s:.3f} s ({run.rate_per_s:,.0f} ns/s); "
                      f"settled after {settled if settled is not None else 'timeout'} s", flush=True)
    ours, theirs = statistics.median(times[Method.NETLINK]), statistics.median(times[Method.IP_BATCH])
    extras = " ".join(f"--{f.name}" for f in dataclasses.fields(config)
                      if f.name in ("up", "addresses", "bridge") and getattr(config, f.name))
    print(f"median over {args.rounds} rounds, {args.count} namespaces, links {args.links.value} {extras}".rstrip())
    print(f"vdevperf (netlink) {ours:.3f} s  ip -batch {theirs:.3f} s  ratio ip-batch/vdevperf = {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
