"""``vdevperf run`` and ``vdevperf compare``: the measuring commands, their flags and their tables.

Flags follow netperf (-t, -l, -m, -M, -r, -T), output habits iperf3 (--json).
The flags become typed configs through the helpers the Python API uses
(``vdevperf.api``), then one operation of ``vdevperf.bench`` runs and the
table is printed with where the result file went.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from vdevperf import api, bench, rounds, sweeps
from vdevperf.api import COMPARE_CPUS, COMPARE_LENGTH_S, COMPARE_WARMUP_S, Cpus
from vdevperf.cli import argtypes
from vdevperf.cli.argtypes import cpu_number, fraction, number_in, pair, percent, seconds, size_in, whole
from vdevperf.cli.common import Subparsers, note, print_document, progress_line, stored
from vdevperf.errors import VdevperfError
from vdevperf.model import (
    BURST,
    ENGINES,
    FLOWS,
    INTERVAL_S,
    LENGTH_S,
    MAX_NAME_CHARS,
    MESSAGE_BYTES,
    RATE_TPS,
    SOCKBUF_BYTES,
    WARMUP_S,
    TestConfig,
    TopologySpec,
    span,
)
from vdevperf.remote.client import RemoteTarget, parse_address
from vdevperf.remote.server import DEFAULT_PORT
from vdevperf.remote.token import read_token
from vdevperf.report.table import compare_table, cpu_table, matrix_table, noise_floor, run_table, sweep_table
from vdevperf.results import ResultFile, resume
from vdevperf.topology.offload import GROUPS
from vdevperf.topology.spec import bundled_topologies, load_topology

# Rounds of an offload matrix unless --rounds says otherwise (the fewest that give an interval).
MATRIX_ROUNDS = 3


def add_parsers(sub: Subparsers) -> None:
    """Add ``run`` and ``compare`` to the subcommands."""
    run = sub.add_parser("run", help="run tests on one topology, or against a vdevperf server")
    run.add_argument("topology", nargs="?", help="bundled topology name (e.g. veth) or path to a .toml file")
    _add_test_flags(run, "TCP_STREAM")
    run.add_argument(
        "--offload-matrix",
        type=argtypes.features,
        metavar="FEATURE,...",
        help="run the test once per on/off combination of these offloads (2^k runs), in "
        "interleaved rounds, each against all on",
    )
    run.add_argument(
        "--rounds",
        type=whole(),
        metavar="N",
        help=f"with --offload-matrix or --sweep: rounds over the combinations or values (default {MATRIX_ROUNDS})",
    )
    run.add_argument(
        "--alpha",
        type=fraction,
        default=0.05,
        help="with --offload-matrix or --sweep: significance level of the verdicts (default 0.05)",
    )
    run.add_argument(
        "--remote",
        metavar="HOST:PORT",
        help=f"run the server half on the vdevperf server there (default port {DEFAULT_PORT}); "
        "the client runs here, in this namespace",
    )
    run.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="with --remote: the shared secret the server was started with (mode 600)",
    )
    run.add_argument(
        "--json-stream",
        action="store_true",
        help="print one JSON object per line as each sampling interval ends (iperf3's --json-stream), "
        "then the result document as the last line",
    )
    compare = sub.add_parser("compare", help="compare topologies (default: all bundled ones)")
    compare.add_argument("topologies", nargs="*", help="topology names or files (default: all bundled)")
    compare.add_argument("--baseline", help="topology the others are relative to (default veth, else the first)")
    compare.add_argument(
        "--resume", type=Path, metavar="FILE", help="add to FILE (from an interrupted compare) only the rounds it lacks"
    )
    compare.add_argument(
        "--rounds",
        type=whole(),
        metavar="N",
        help=f"rounds, each measuring every topology and test once in a shuffled order (default "
        f"{rounds.DEFAULT_ROUNDS}; with --target-ci the minimum, default "
        f"{rounds.MIN_TARGET_ROUNDS})",
    )
    compare.add_argument(
        "--target-ci",
        type=percent,
        metavar="W",
        help="run rounds until every rate and service-demand ratio's interval is within ±W %%, or --max-time runs out",
    )
    compare.add_argument(
        "--max-time",
        type=seconds,
        metavar="S",
        help="start no round that would end past S seconds (measured from the first round)",
    )
    compare.add_argument(
        "--alpha",
        type=fraction,
        default=0.05,
        help="significance level of the verdicts over the whole table, Holm-corrected (default 0.05)",
    )
    compare.add_argument(
        "--aa",
        action="store_true",
        help="A/A self-check: TOPOLOGY (default veth) against a renamed copy of itself; prints the "
        "smallest difference this machine resolves at these rounds",
    )
    _add_test_flags(compare, "TCP_STREAM,TCP_RR", COMPARE_LENGTH_S, COMPARE_WARMUP_S)


def _add_test_flags(p: argparse.ArgumentParser, tests_default: str, length: float = 10.0, warmup: float = 1.0) -> None:
    """The flags run and compare share: netperf's test flags, sampling, output, offloads."""
    p.add_argument(
        "-t",
        "--test",
        dest="tests",
        type=argtypes.tests,
        default=argtypes.tests(tests_default),
        help=f"netperf test name(s), comma-separated (default {tests_default})",
    )
    message = size_in(MESSAGE_BYTES)
    sockbuf = size_in(SOCKBUF_BYTES)
    p.add_argument(
        "-l",
        "--length",
        type=number_in(LENGTH_S, "s"),
        default=length,
        help=f"measured seconds per test (per round with compare; {span(LENGTH_S, 's')}; default {length:g})",
    )
    p.add_argument(
        "--warmup",
        type=number_in(WARMUP_S, "s"),
        default=warmup,
        help=f"seconds run before measuring ({span(WARMUP_S, 's')}; default {warmup:g})",
    )
    p.add_argument(
        "-m",
        "--send-size",
        type=message,
        help=f"bytes per send call ({span(MESSAGE_BYTES, 'bytes')}; default 128K; UDP_STREAM 1472, "
        "one unfragmented datagram)",
    )
    p.add_argument(
        "-M",
        "--recv-size",
        type=message,
        default=128 * 1024,
        help=f"bytes per receive call ({span(MESSAGE_BYTES, 'bytes')}; default 128K)",
    )
    p.add_argument(
        "-r",
        "--rr-size",
        type=pair(message, "REQ,RESP"),
        default=(1, 1),
        help=f"request,response bytes of RR tests ({span(MESSAGE_BYTES, 'bytes')}; default 1,1)",
    )
    p.add_argument(
        "-s",
        "--client-sockbuf",
        type=pair(sockbuf, "SEND[,RECV]"),
        default=(None, None),
        help=f"client SO_SNDBUF,SO_RCVBUF bytes ({span(SOCKBUF_BYTES, 'bytes')}; default: kernel's, autotuned)",
    )
    p.add_argument(
        "-S",
        "--server-sockbuf",
        type=pair(sockbuf, "SEND[,RECV]"),
        default=(None, None),
        help=f"server SO_SNDBUF,SO_RCVBUF bytes ({span(SOCKBUF_BYTES, 'bytes')}; default: kernel's, autotuned)",
    )
    p.add_argument(
        "-P",
        "--parallel",
        type=whole(*FLOWS),
        default=1,
        help=f"concurrent flows, each a client and a server process ({span(FLOWS, 'flows')}; default 1)",
    )
    p.add_argument(
        "-i",
        "--iterations",
        type=pair(whole(), "MAX[,MIN]"),
        default=None,
        help="repeat each test up to MAX times, at least MIN (netperf's -i; default 1, with -I 10,3)",
    )
    p.add_argument(
        "-I",
        "--confidence",
        type=pair(percent, "LEVEL[,WIDTH]"),
        default=None,
        help="stop repeating once the LEVEL %% confidence interval of throughput and CPU is within "
        "WIDTH %% (mean ±WIDTH/2 %%; default 99,5)",
    )
    p.add_argument(
        "-T",
        "--cpu",
        type=pair(cpu_number, "CLIENT_CPU,SERVER_CPU"),
        default=None,
        help="pin client and server to these CPUs, 'none' for neither (default: run leaves it to "
        f"the scheduler; compare pins -T {COMPARE_CPUS[0]},{COMPARE_CPUS[1]})",
    )
    # TCP socket options, netperf's test-specific -K and -D (iperf3: -C and -N), and neper's zerocopy.
    p.add_argument(
        "-K",
        "--congestion",
        type=argtypes.congestion,
        metavar="CC",
        help="TCP congestion control on both ends' sockets (TCP_CONGESTION), e.g. reno, cubic, bbr; "
        "one the kernel has loaded (default: the namespace's)",
    )
    p.add_argument("-D", "--nodelay", action="store_true", help="TCP_NODELAY on both ends' sockets (no Nagle)")
    p.add_argument(
        "-Z",
        "--zerocopy",
        action="store_true",
        help="TCP_STREAM/TCP_MAERTS: send with MSG_ZEROCOPY; results count the sends the kernel still copied",
    )
    # Offered load (iperf3's -b and --fq-rate, sockperf's --mps), all flows together, split evenly.
    p.add_argument(
        "-b",
        "--bitrate",
        type=argtypes.bitrate,
        metavar="RATE",
        help="stream tests: offer RATE bits/s of payload, all flows together (e.g. 500M, 2G), paced by the "
        "senders themselves on an absolute schedule; tables show the asked rate next to the achieved one",
    )
    p.add_argument(
        "--fq-rate",
        type=argtypes.bitrate,
        metavar="RATE",
        help="TCP stream tests: cap each sender's socket at its share of RATE bits/s with "
        "SO_MAX_PACING_RATE (the kernel paces, counting headers; see README)",
    )
    p.add_argument(
        "--rate",
        type=number_in(RATE_TPS, "transactions/s"),
        metavar="TPS",
        help="TCP_RR/UDP_RR: start TPS transactions per second, all flows together, on a fixed schedule, "
        "each timed from when it was due (no coordinated omission)",
    )
    p.add_argument(
        "--bidir",
        action="store_true",
        help="TCP_STREAM/TCP_MAERTS: both directions at once (iperf3's --bidir): -P flows each way, each "
        "its own connection; the rate is the total, with columns per direction",
    )
    p.add_argument(
        "--max-steal",
        type=percent,
        default=rounds.DEFAULT_MAX_STEAL_PCT,
        metavar="PCT",
        help="measure an iteration again (up to twice) when the host stole more than PCT %% of the "
        f"machine during its window (default {rounds.DEFAULT_MAX_STEAL_PCT:g})",
    )
    p.add_argument("--seed", type=whole(0), help="seed of the interleaved rounds' order (default: random; recorded)")
    p.add_argument(
        "--sweep",
        action="append",
        type=argtypes.sweep,
        metavar="PARAM=V1,V2,...",
        help="measure at each value, in interleaved rounds, each against the first value on the same "
        "topology: mtu (every device of the topology; e.g. mtu=1500,9000,65535) or size (-m/-M of "
        "stream tests, -r of RR tests; e.g. size=64,1K,16K,128K); one parameter at a time",
    )
    family = p.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ip_version", action="store_const", const=4, default=4, help="IPv4 (default)")
    family.add_argument("-6", dest="ip_version", action="store_const", const=6, help="IPv6")
    p.add_argument(
        "--interval",
        type=number_in(INTERVAL_S, "s"),
        default=1.0,
        help=f"sampling interval in seconds ({span(INTERVAL_S, 's')}; default 1)",
    )
    p.add_argument("-o", "--output", type=Path, help="result JSON file (default results/vdevperf-<time>.json)")
    p.add_argument("--json", action="store_true", help="print the result document as JSON instead of a table")
    p.add_argument(
        "--offload",
        action="append",
        type=argtypes.offload,
        default=[],
        help="set offloads on every device of the path (tso=off,gro=on) or one device (c0:tso=off); "
        "features: " + ", ".join(GROUPS) + "; restored afterwards",
    )
    p.add_argument(
        "--capture",
        action="store_true",
        help="probe frame sizes at the receiving device during the warm-up (implied by --offload)",
    )
    p.add_argument(
        "--percentiles",
        type=argtypes.percentiles,
        default=(),
        help="RR tests: also these latency percentiles, comma-separated (e.g. 50,90,99,99.9,99.99), "
        "from the merged histogram; stored as metrics.latency_percentiles_us and shown as columns",
    )
    p.add_argument(
        "--burst",
        type=whole(*BURST),
        default=1,
        metavar="N",
        help=f"TCP_RR/UDP_RR: keep N transactions in flight at once ({span(BURST, 'transactions')}; default 1; "
        "netperf's test-specific -b N is --burst N+1); use -D with TCP, or Nagle holds back the requests",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="native",
        help="the loops that run the load: native (C, built at install; the default) or python (the pure-Python "
        "ones); native falls back to python, saying so, when the C loops did not build. Stored as config.engine",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--cpu-detail",
        action="store_true",
        help="also print where CPU time went: per /proc/stat field, per CPU, per endpoint process",
    )


def _configs(args: argparse.Namespace, cpus: Cpus = api.UNPINNED) -> list[TestConfig]:
    # netperf: -I alone repeats 3 to 10 times; -i alone aims at 99 % +-2.5 %.
    iterations = args.iterations or ((10, 3) if args.confidence else (1, 1))
    level, width = args.confidence or (99.0, 5.0)
    return api.test_configs(
        args.tests,
        args.cpu or cpus,
        send_size=args.send_size,
        check_server=getattr(args, "remote", None) is None,  # a remote server checks its own CPUs
        duration_s=args.length,
        warmup_s=args.warmup,
        recv_size=args.recv_size,
        request_size=args.rr_size[0],
        response_size=args.rr_size[1],
        ip_version=args.ip_version,
        interval_s=args.interval,
        # --bidir: -P flows each way; a TestConfig counts every flow.
        flows=args.parallel * (2 if args.bidir else 1),
        client_sndbuf=args.client_sockbuf[0],
        client_rcvbuf=args.client_sockbuf[1],
        server_sndbuf=args.server_sockbuf[0],
        server_rcvbuf=args.server_sockbuf[1],
        iterations_max=iterations[0],
        iterations_min=min(iterations),
        confidence_level_pct=level,
        confidence_width_pct=width,
        congestion_control=args.congestion,
        nodelay=args.nodelay,
        zerocopy=args.zerocopy,
        latency_percentiles=args.percentiles,
        rate_bps=args.bitrate,
        fq_rate_bps=args.fq_rate,
        rate_tps=args.rate,
        bidir=args.bidir,
        burst=args.burst,
        engine=args.engine,
        notice=note,
    )


def _plan(args: argparse.Namespace, default_rounds: int) -> rounds.Plan:
    """The rounds plan from the flags; a random seed unless --seed (it is recorded either way)."""
    target = getattr(args, "target_ci", None) is not None
    count = getattr(args, "rounds", None) or (rounds.MIN_TARGET_ROUNDS if target else default_rounds)
    return api.make_plan(count, args.seed, target, getattr(args, "max_time", None), args.max_steal)


@contextmanager
def _options(
    args: argparse.Namespace, runs: int, configs: Sequence[TestConfig], results: ResultFile
) -> Iterator[bench.RunOptions]:
    """Run options from the flags; a progress line only on a terminal, and not with --json/--quiet."""
    offload = tuple(r for group in args.offload for r in group)
    done = {(r.topology, r.config) for r in results.runs}
    streaming = getattr(args, "json_stream", False)
    with progress_line(args.json or args.quiet or streaming, runs, configs) as progress:
        yield bench.RunOptions(
            offload=offload,
            capture=args.capture or bool(offload) or bool(getattr(args, "offload_matrix", None)),
            done=lambda topology, cfg: (topology, cfg) in done,
            progress=progress,
            notice=note,
            interval=_stream_line if streaming else None,
        )


def _stream_line(record: dict[str, object]) -> None:
    """One line of --json-stream, flushed at once so that a reader sees each interval as it ends."""
    print(json.dumps(record), flush=True)


def _emit(args: argparse.Namespace, results: ResultFile, table: str) -> None:
    if getattr(args, "json_stream", False):
        _stream_line({"event": "end", "result": results.document()})
        return
    if args.json:
        print_document(results)
        return
    print(table)
    lab = results.environment.get("lab")
    if lab and lab.get("emulated"):
        print(
            f"emulated ({lab.get('accel', '?').upper()}, guest kernel {lab.get('guest_kernel')}): "
            "functional checks, not performance figures"
        )
    if args.cpu_detail:
        print()
        print(cpu_table(results.runs))
    if results.unwritten:  # no file could take it (said on stderr): the document itself
        print("\nresults (no file could be written):")
        print_document(results)
    else:
        print(f"\nresults: {results.path}")


def _remote_target(args: argparse.Namespace) -> RemoteTarget:
    """The server of ``run --remote``, with the flags that cannot go with it refused."""
    if args.topology is not None:
        raise VdevperfError(
            "--remote", f"runs from this host to a vdevperf server; drop the topology '{args.topology}'"
        )
    for flag, given in (
        ("--offload", args.offload),
        ("--offload-matrix", args.offload_matrix),
        ("--capture", args.capture),
        ("--sweep", args.sweep),
    ):
        if given:
            raise VdevperfError(flag, "needs a topology: with --remote the path's devices are not vdevperf's")
    if args.token_file is None:
        raise VdevperfError("--token-file", "is required with --remote: the secret the server was started with")
    try:
        host, port = parse_address(args.remote, DEFAULT_PORT)
    except ValueError as exc:
        raise VdevperfError("--remote", str(exc)) from None
    return RemoteTarget(host=host, port=port, token=read_token(args.token_file))


def _swept(args: argparse.Namespace, configs: Sequence[TestConfig]) -> sweeps.Sweep | None:
    """The --sweep asked for, checked against every test before anything is built; None without one."""
    if not args.sweep:
        return None
    if len(args.sweep) > 1:
        names = " and ".join(s.text for s in args.sweep)
        raise VdevperfError("--sweep", f"one parameter at a time; got {names}")
    if args.iterations or args.confidence:
        raise VdevperfError("-i/-I", "a sweep repeats in interleaved rounds: use --rounds N")
    swept: sweeps.Sweep = args.sweep[0]
    try:
        sweeps.configs(swept, list(configs))
    except ValueError as exc:
        raise VdevperfError("--sweep", f"{swept.text}: {exc}") from None
    return swept


def _run_sweep(
    args: argparse.Namespace,
    argv: Sequence[str],
    specs: Sequence[TopologySpec],
    configs: Sequence[TestConfig],
    swept: sweeps.Sweep,
    judging: bench.Judging,
    resumed: ResultFile | None = None,
) -> int:
    """A sweep of ``run`` (one topology) or ``compare`` (each topology), then its table."""
    runs = judging.plan.rounds
    with stored(args.output, argv, resumed) as results, _options(args, runs, configs, results) as options:
        bench.sweep_compare(specs, configs, swept, results, options, judging)
    _emit(args, results, sweep_table(results.runs, results.comparison or {}))
    return 0


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run tests on one topology, or against a vdevperf server, and print a netperf-style table."""
    if args.json_stream and (args.remote is not None or args.sweep is not None or args.offload_matrix):
        raise VdevperfError("--json-stream", "goes with a plain run, not with --remote, --sweep or --offload-matrix")
    if args.remote is not None:
        target = _remote_target(args)
        configs = _configs(args)
        with stored(args.output, argv) as results, _options(args, len(configs), configs, results) as options:
            runs = bench.run_remote(target, configs, results, options)
        _emit(args, results, run_table(runs))
        return 0
    if args.token_file is not None:
        raise VdevperfError("--token-file", "goes with --remote")
    if args.topology is None:
        raise VdevperfError("run", "give a topology (e.g. veth) or --remote HOST:PORT")
    spec = load_topology(args.topology)
    configs = _configs(args)
    swept = _swept(args, configs)
    if swept is not None:
        if args.offload_matrix:
            raise VdevperfError("--sweep", "cannot go with --offload-matrix: one sweep at a time")
        judging = bench.Judging(plan=_plan(args, MATRIX_ROUNDS), alpha=args.alpha, placement=api.placement(args.cpu))
        return _run_sweep(args, argv, [spec], configs, swept, judging)
    if args.offload_matrix:
        if len(configs) != 1:
            raise VdevperfError("--offload-matrix", "sweeps one test at a time; give a single -t")
        judging = bench.Judging(plan=_plan(args, MATRIX_ROUNDS), alpha=args.alpha, placement=api.placement(args.cpu))
        with stored(args.output, argv) as results, _options(args, judging.plan.rounds, configs, results) as options:
            bench.offload_matrix(spec, configs[0], args.offload_matrix, results, options, judging)
        _emit(args, results, matrix_table(results.runs, results.comparison or {}))
        return 0
    plan = _plan(args, 1)
    with stored(args.output, argv) as results, _options(args, len(configs), configs, results) as options:
        runs = bench.run(spec, configs, results, options, plan)
    _emit(args, results, run_table(runs))
    return 0


def cmd_compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Compare topologies in interleaved rounds; one table of paired ratios and verdicts against a baseline."""
    if args.iterations or args.confidence:
        raise VdevperfError("-i/-I", "compare repeats in interleaved rounds: use --rounds N or --target-ci W")
    if args.aa:
        names = args.topologies or ["veth"]
        if len(names) != 1:
            raise VdevperfError("--aa", f"compares one topology with a copy of itself; got {len(names)}")
        spec = load_topology(names[0])
        # The copy's name stays within the cap a topology name has.
        specs = [spec, dataclasses.replace(spec, name=f"{spec.name[: MAX_NAME_CHARS - 5]}-copy")]
    else:
        specs = [load_topology(name) for name in args.topologies or bundled_topologies()]
    known = [s.name for s in specs]
    baseline = args.baseline or ("veth" if "veth" in known else known[0])
    if baseline not in known:
        raise VdevperfError("--baseline", f"'{baseline}' is not among the compared topologies ({', '.join(known)})")
    placement = api.placement(args.cpu, COMPARE_CPUS)
    configs = _configs(args, COMPARE_CPUS)
    plan = _plan(args, rounds.DEFAULT_ROUNDS)
    swept = _swept(args, configs)
    if swept is not None:
        if args.resume is not None or args.aa or args.baseline:
            flag = "--resume" if args.resume is not None else "--aa" if args.aa else "--baseline"
            raise VdevperfError(flag, "cannot go with --sweep: a sweep's baseline is its first value")
        judging = bench.Judging(plan=plan, alpha=args.alpha, target_ci_pct=args.target_ci, placement=placement)
        return _run_sweep(args, argv, specs, configs, swept, judging)
    resumed = None
    if args.resume is not None:
        if args.output is not None:
            raise VdevperfError("--resume", "adds to the file it names; -o cannot go with it")
        resumed = resume(args.resume)
        if resumed.comparison:  # the same round orders as the interrupted run
            plan = dataclasses.replace(plan, seed=resumed.comparison["plan"]["seed"])
    judging = bench.Judging(
        plan=plan, baseline=baseline, alpha=args.alpha, target_ci_pct=args.target_ci, placement=placement
    )
    with stored(args.output, argv, resumed) as results, _options(args, plan.rounds, configs, results) as options:
        bench.compare(specs, configs, results, options, judging)
    wanted = {(s.name, c) for s in specs for c in configs}
    runs = [r for r in results.runs if (r.topology, r.config) in wanted]
    text = compare_table(runs, results.comparison or {})
    if args.aa:
        text += "\n" + noise_floor(results.comparison or {})
    _emit(args, results, text)
    return 0
