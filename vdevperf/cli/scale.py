"""``vdevperf scale``: flags to a ScaleConfig, run_scale, a table per phase, the JSON file.

``vdevperf.cli`` wires it in with ``add_parser(sub)`` and ``COMMANDS["scale"] = cmd_scale``.
Bad flags raise VdevperfError (one line, exit 2) through the parser class cli
gives its subparsers; SIGINT/SIGTERM reach run_scale as errors.Interrupted,
whose teardown has run by the time cli sees it. The result file is rewritten
after each phase, so an interrupted run keeps what it measured
(``"complete": false``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from vdevperf.cli.argtypes import counts, members, seconds, whole
from vdevperf.cli.common import Subparsers, note, print_document
from vdevperf.errors import refused
from vdevperf.results import DEFAULT_RESULTS_DIR
from vdevperf.scale import table
from vdevperf.scale.document import ScaleFile
from vdevperf.scale.model import DEFAULT_SETNS_COUNTS, Links, Method, Phase, ScaleConfig, ScaleResult
from vdevperf.scale.runner import run_scale


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Register ``scale`` and its flags on cli's subparsers; returns the new parser."""
    p = subparsers.add_parser("scale", help="create and destroy many namespaces: rates, memory, setns, contention")
    p.add_argument("--count", type=whole(1), default=1000, help="namespaces to create (default 1000)")
    p.add_argument(
        "--mark", type=whole(1), default=250, help="report the creation rate every this many namespaces (default 250)"
    )
    p.add_argument(
        "--method",
        dest="methods",
        type=members(Method, str.lower),
        default=tuple(Method),
        help="creation methods to compare, comma-separated: netlink (vdevperf's own, no fork), ip "
        "(an ip process per command), ip-batch, unshare (a forked process per namespace) "
        "(default: all)",
    )
    p.add_argument(
        "--links",
        type=Links,
        choices=list(Links),
        default=Links.NONE,
        help="none, or a veth pair from each namespace to a hub namespace (default none)",
    )
    p.add_argument("--bridge", action="store_true", help="put the hub ends on a bridge in the hub (--links veth)")
    p.add_argument(
        "--addresses", action="store_true", help="an IPv4 address on each namespace's veth end (--links veth)"
    )
    p.add_argument("--up", action="store_true", help="bring lo and both veth ends up")
    p.add_argument(
        "--phases",
        type=members(Phase, str.lower),
        default=tuple(Phase),
        help="create, memory, setns, contention, comma-separated (default: all)",
    )
    p.add_argument(
        "--setns-counts",
        type=counts,
        default=DEFAULT_SETNS_COUNTS,
        help="namespace counts at which to time setns, besides --count (default 1,16,64,512)",
    )
    p.add_argument("--setns-samples", type=whole(2), default=2000, help="setns samples per count (default 2000)")
    p.add_argument(
        "--settle-timeout",
        type=seconds,
        default=30.0,
        help="seconds to wait after a teardown for the kernel to free the namespaces (default 30)",
    )
    p.add_argument("-o", "--output", type=Path, help="result JSON file (default results/vdevperf-scale-<time>.json)")
    p.add_argument("--json", action="store_true", help="print the result document as JSON instead of tables")
    return p


def config_from_args(args: argparse.Namespace) -> ScaleConfig:
    """The ScaleConfig the flags ask for; VdevperfError naming the flag if they do not fit together."""
    try:
        return ScaleConfig(
            count=args.count,
            mark=args.mark,
            methods=tuple(args.methods),
            links=args.links,
            bridge=args.bridge,
            addresses=args.addresses,
            up=args.up,
            phases=tuple(args.phases),
            setns_counts=tuple(args.setns_counts),
            setns_samples=args.setns_samples,
            settle_timeout_s=args.settle_timeout,
        )
    except ValueError as exc:
        raise refused(exc) from None


def section(result: ScaleResult, phase: str) -> str:
    """The text printed when ``phase`` has just finished."""
    config = result.config
    if phase.startswith("create "):
        run = result.creation[-1]
        extras = [
            flag for flag, on in (("bridge", config.bridge), ("addresses", config.addresses), ("up", config.up)) if on
        ]
        title = f"create: {run.method.value}, {run.namespaces:,} namespaces, links {run.links.value}" + (
            f" ({', '.join(extras)})" if extras else ""
        )
        lines = [title, table.marks_table(run)]
        if run.teardown is not None:
            lines.append(table.teardown_line(run.teardown))
        return "\n".join(lines) + "\n"
    if phase == "create":
        return "creation, per method\n" + table.creation_table(result.creation) + "\n"
    if phase == "setns":
        return "setns latency\n" + table.setns_table(result.setns) + "\n"
    if phase == "memory" and result.memory is not None:
        return "memory\n" + table.memory_table(result.memory) + "\n"
    if phase == "contention" and result.contention is not None:
        return (
            "contention\n"
            + table.contention_table(result.contention)
            + "\n"
            + table.teardown_line(result.contention.teardown)
            + "\n"
        )
    if phase == "teardown" and result.build_teardown is not None:
        return table.teardown_line(result.build_teardown) + "\n"
    return ""


def cmd_scale(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Create, measure and destroy many namespaces; print a table per phase and store JSON."""
    config = config_from_args(args)
    results = ScaleFile(path=None, command=["vdevperf", *argv], notice=note)
    results.claim(args.output, DEFAULT_RESULTS_DIR)  # before any namespace exists

    def on_phase(result: ScaleResult, phase: str) -> None:
        results.update(result)
        if not args.json:
            text = section(result, phase)
            if text:
                print(text, flush=True)

    try:
        result = run_scale(config, on_phase, note)
        results.update(result, complete=True)
    except BaseException:
        results.release()
        if results.unwritten and results.result is not None:  # measured, and no file took it
            print_document(results)
        raise
    if args.json or results.unwritten:
        print_document(results)
    else:
        print(f"results: {results.path}")
    return 0
