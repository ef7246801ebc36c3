"""vdevperf's namespace creation (the `netlink` method) against `ip -batch`, in one run.

Both create N namespaces (default 1000; with --links veth a veth pair each to
a hub namespace, and --up/--addresses/--bridge as in `vdevperf scale`) in
one chunk (a single `ip -batch` for the namespaces, one for the links), then
delete them and wait for the kernel to settle before the next round, so each
round starts from a quiet kernel. Rounds alternate which goes first; the
figure to quote is the ratio of the median rates (namespaces per second),
vdevperf / ip-batch (>= 1.0: vdevperf is at least as fast).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate  # noqa: E402

from vdevperf.scale.memory import check_capacity  # noqa: E402
from vdevperf.scale.methods import check_tools  # noqa: E402
from vdevperf.scale.model import Links, Method, Phase, ScaleConfig  # noqa: E402
from vdevperf.scale.runner import creation_run  # noqa: E402
from vdevperf.scale.session import Session  # noqa: E402


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
    config = ScaleConfig(
        count=args.count,
        mark=args.count,
        methods=(Method.NETLINK, Method.IP_BATCH),
        links=args.links,
        up=args.up,
        addresses=args.addresses,
        bridge=args.bridge,
        phases=(Phase.CREATE,),
        settle_timeout_s=args.settle_timeout,
    )
    check_capacity(config)
    check_tools(config.methods)
    extras = " ".join(f"--{flag}" for flag in ("up", "addresses", "bridge") if getattr(args, flag))
    label = f"{args.count} namespaces, links {args.links.value} {extras}".rstrip() + ":"
    with Session(config) as session:
        session.open()
        alternate(
            args.rounds,
            lambda: creation_run(session, Method.NETLINK).rate_per_s,
            lambda: creation_run(session, Method.IP_BATCH).rate_per_s,
            "ip-batch",
            "namespaces/s",
            label,
        )


if __name__ == "__main__":
    main()
