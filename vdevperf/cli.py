"""Command line: argparse, one ``cmd_*`` per subcommand, exit codes.

A thin layer: each command turns its flags into typed configs, calls one
operation of ``vdevperf.bench`` (or topology/probe/cleanup) and formats what
comes back. Test names, flags and units follow netperf (-t, -l, -m, -M, -r,
-T); output habits follow iperf3 (--json).

Exit status: 0 success, 2 bad input or an expected failure (one line on
stderr, ``vdevperf: <what>: <why>``), 1 reserved for regressions found by a
later ``diff``. On SIGINT/SIGTERM everything is torn down, then the process
dies by the same signal, so callers see how it ended.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil

from vdevperf import bench, rounds
from vdevperf.argtypes import fraction, number_in, pair, percent, seconds, seconds_or_zero, size_in, whole
from vdevperf.errors import Interrupted, VdevperfError
from vdevperf.lab.command import add_parser as add_lab_parser
from vdevperf.lab.command import cmd_lab
from vdevperf.load.tests import TESTS
from vdevperf.measure.procmon import Monitor, Target, watch
from vdevperf.model import (
    FLOWS,
    INTERVAL_S,
    LENGTH_S,
    MAX_NAME_CHARS,
    MESSAGE_BYTES,
    SOCKBUF_BYTES,
    WARMUP_S,
    TestConfig,
    TestName,
    span,
)
from vdevperf.remote.client import RemoteTarget, parse_address
from vdevperf.remote.server import DEFAULT_PORT, Server, ServerConfig
from vdevperf.remote.token import read_token
from vdevperf.report import diff, formats, occupancy, plot
from vdevperf.report.table import compare_table, cpu_table, diff_table, matrix_table, noise_floor, run_table
from vdevperf.results import (
    ResultFile,
    check_writable,
    documents_of_kind,
    load,
    load_runs,
    resume,
    runs_of,
    write_kept,
)
from vdevperf.scale.command import add_parser as add_scale_parser
from vdevperf.scale.command import cmd_scale
from vdevperf.topology import cleanup, probe
from vdevperf.topology.offload import GROUPS, OffloadRequest, canonical, parse_requests
from vdevperf.topology.spec import bundled_topologies, load_topology

EXIT_ERROR = 2
EXIT_REGRESSION = 1
DEFAULT_RESULTS_DIR = Path("results")
# compare's placement unless -T says otherwise: benchmarks/placement.py measured the smallest
# round-to-round spread of paired ratios on a 2-vCPU guest with the client on CPU 0, the server on 1
# (one CPU: both on it).
COMPARE_CPUS: tuple[int, int] = (0, 1) if (os.cpu_count() or 1) > 1 else (0, 0)
# compare's default window per round and warm-up: short windows, many rounds (see rounds.py).
COMPARE_LENGTH_S, COMPARE_WARMUP_S = 3.0, 0.5


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags in vdevperf's one-line form with exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise VdevperfError("usage", message)


def _cpu_number(text: str) -> int | None:
    if text == "none":
        return None  # -T none: not pinned, where compare would pin by default
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' is not a CPU number (or 'none')")
    return int(text)


def _check_cpu(cpu: int | None) -> None:
    if cpu is not None and cpu >= (os.cpu_count() or 1):
        raise VdevperfError("-T/--cpu", f"CPU {cpu} does not exist (this machine has {os.cpu_count()})")


def _offload(text: str) -> list[OffloadRequest]:
    try:
        return parse_requests(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _features(text: str) -> list[str]:
    try:
        names = [canonical(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"'{text}' must name distinct features, e.g. tso,gro")
    return names


def _tests(text: str) -> list[TestName]:
    names = []
    for part in text.split(","):
        try:
            names.append(TestName(part.strip().upper()))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"unknown test '{part}' (known: {', '.join(t.value for t in TestName)})"
            ) from None
    return names


def _pattern(text: str) -> str:
    if not text or not text.isprintable():
        raise argparse.ArgumentTypeError(f"'{text}' is not a process name or pattern (printable, not empty)")
    return text


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a TCP port (0-65535)")
    return int(text)


def _add_test_flags(p: argparse.ArgumentParser, tests_default: str, length: float = 10.0, warmup: float = 1.0) -> None:
    p.add_argument(
        "-t",
        "--test",
        dest="tests",
        type=_tests,
        default=_tests(tests_default),
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
        type=pair(_cpu_number, "CLIENT_CPU,SERVER_CPU"),
        default=None,  # type: ignore
        help="pin client and server to these CPUs, 'none' for neither (default: run leaves it to "
        f"the scheduler; compare pins -T {COMPARE_CPUS[0]},{COMPARE_CPUS[1]})",
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
        type=_offload,
        default=[],
        help="set offloads on every device of the path (tso=off,gro=on) or one device (c0:tso=off); "
        "features: " + ", ".join(GROUPS) + "; restored afterwards",
    )
    p.add_argument(
        "--capture",
        action="store_true",
        help="probe frame sizes at the receiving device during the warm-up (implied by --offload)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--cpu-detail",
        action="store_true",
        help="also print where CPU time went: per /proc/stat field, per CPU, per endpoint process",
    )


def _configs(args: argparse.Namespace, cpus: tuple[int | None, int | None] = (None, None)) -> list[TestConfig]:
    client_cpu, server_cpu = args.cpu if args.cpu else cpus
    _check_cpu(client_cpu)
    if getattr(args, "remote", None) is None:
        _check_cpu(server_cpu)  # a remote server checks its own CPUs
    # netperf: -I alone repeats 3 to 10 times; -i alone aims at 99 % +-2.5 %.
    iterations = args.iterations or ((10, 3) if args.confidence else (1, 1))
    level, width = args.confidence or (99.0, 5.0)
    try:
        return [
            TestConfig(
                test=test,
                duration_s=args.length,
                warmup_s=args.warmup,
                send_size=args.send_size or TESTS[test].default_send_size,
                recv_size=args.recv_size,
                request_size=args.rr_size[0],
                response_size=args.rr_size[1],
                ip_version=args.ip_version,
                client_cpu=client_cpu,
                server_cpu=server_cpu,
                interval_s=args.interval,
                flows=args.parallel,
                client_sndbuf=args.client_sockbuf[0],
                client_rcvbuf=args.client_sockbuf[1],
                server_sndbuf=args.server_sockbuf[0],
                server_rcvbuf=args.server_sockbuf[1],
                iterations_max=iterations[0],
                iterations_min=min(iterations),
                confidence_level_pct=level,
                confidence_width_pct=width,
            )
            for test in args.tests
        ]
    except ValueError as exc:
        flag, _, why = str(exc).partition(": ")
        raise VdevperfError(flag, why) from None


def _note(line: str) -> None:
    """A one-line note on stderr that does not stop the command (a skipped file, results written elsewhere)."""
    print(f"vdevperf: {line}", file=sys.stderr)


@contextlib.contextmanager
def _stored(args: argparse.Namespace, argv: Sequence[str], resumed: ResultFile | None = None) -> Iterator[ResultFile]:
    """The result file of a measuring command, claimed before anything is built: an unwritable -o is one
    line and nothing is measured. Should the command fail, a file it created and never stored a run in
    is removed, and a document no file could take is printed: no measurement is lost."""
    results = resumed or ResultFile(path=None, command=["vdevperf", *argv])
    results.notice = _note
    if resumed is None:
        results.claim(args.output, DEFAULT_RESULTS_DIR)
    elif results.path is not None:
        check_writable(results.path)
    try:
        yield results
    except BaseException:
        results.release()
        if results.unwritten and results.runs:
            _print_document(results)
        raise


def _print_document(results: ResultFile) -> None:
    json.dump(results.document(), sys.stdout, indent=1)
    print(flush=True)


class _Progress:
    """One status line on a terminal: which run of how many, elapsed and estimated time left."""

    def __init__(self, runs: int, configs: Sequence[TestConfig]) -> None:
        self.runs = runs
        self.started = time.monotonic()
        self.count = 0
        # Before anything finished, guess from the configured times (+2 s to build and start).
        self.guess_s = statistics.fmean(c.iterations_max * (c.warmup_s + c.duration_s) + 2 for c in configs)

    def __call__(self, step: bench.Step) -> None:
        elapsed = time.monotonic() - self.started
        if step.new_run:
            self.count += 1
        per_run = elapsed / (self.count - 1) if self.count > 1 else self.guess_s
        left = max(per_run * (self.runs - self.count + 1) - (elapsed - per_run * (self.count - 1)), 0)
        line = f"[{self.count}/{self.runs}] {step.label}  elapsed {_clock(elapsed)}, about {_clock(left)} left"
        print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        print("\r\033[K", end="", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


@contextlib.contextmanager
def _options(
    args: argparse.Namespace, runs: int, configs: Sequence[TestConfig], results: ResultFile
) -> Iterator[bench.RunOptions]:
    """Run options from the flags; a progress line only on a terminal, and not with --json/--quiet."""
    offload = tuple(r for group in args.offload for r in group)
    progress = None if args.json or args.quiet or not sys.stderr.isatty() else _Progress(runs, configs)
    done = {(r.topology, r.config) for r in results.runs}
    try:
        yield bench.RunOptions(
            offload=offload,
            capture=args.capture or bool(offload) or bool(getattr(args, "offload_matrix", None)),
            done=lambda topology, cfg: (topology, cfg) in done,
            progress=progress or (lambda step: None),
            notice=_notice,
        )
    finally:
        if progress is not None:
            progress.close()


def _notice(line: str) -> None:
    """A one-line notice on stderr, e.g. what the sweep of dead runs removed."""
    print(f"vdevperf: {line}", file=sys.stderr, flush=True)


def _emit(args: argparse.Namespace, results: ResultFile, table: str) -> None:
    if args.json:
        _print_document(results)
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
        _print_document(results)
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


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run tests on one topology, or against a vdevperf server, and print a netperf-style table."""
    if args.remote is not None:
        target = _remote_target(args)
        configs = _configs(args)
        with _stored(args, argv) as results, _options(args, len(configs), configs, results) as options:
            runs = bench.run_remote(target, configs, results, options)
        _emit(args, results, run_table(runs))
        return 0
    if args.token_file is not None:
        raise VdevperfError("--token-file", "goes with --remote")
    if args.topology is None:
        raise VdevperfError("run", "give a topology (e.g. veth) or --remote HOST:PORT")
    spec = load_topology(args.topology)
    configs = _configs(args)
    if args.offload_matrix:
        if len(configs) != 1:
            raise VdevperfError("--offload-matrix", "sweeps one test at a time; give a single -t")
        judging = bench.Judging(plan=_plan(args, MATRIX_ROUNDS), alpha=args.alpha, placement=_placement(args))
        with _stored(args, argv) as results, _options(args, judging.plan.rounds, configs, results) as options:
            bench.offload_matrix(spec, configs[0], args.offload_matrix, results, options, judging)
        _emit(args, results, matrix_table(results.runs, results.comparison or {}))
        return 0
    plan = _plan(args, 1)
    with _stored(args, argv) as results, _options(args, len(configs), configs, results) as options:
        runs = bench.run(spec, configs, results, options, plan)
    _emit(args, results, run_table(runs))
    return 0


# Rounds of an offload matrix unless --rounds says otherwise (the fewest that give an interval).
MATRIX_ROUNDS = 3


def _plan(args: argparse.Namespace, default_rounds: int) -> rounds.Plan:
    """The rounds plan from the flags; a random seed unless --seed (it is recorded either way)."""
    target = getattr(args, "target_ci", None) is not None
    count = getattr(args, "rounds", None) or (rounds.MIN_TARGET_ROUNDS if target else default_rounds)
    try:
        return rounds.Plan(
            rounds=count,
            seed=args.seed if args.seed is not None else secrets.randbelow(2**31),
            target=target,
            max_time_s=getattr(args, "max_time", None),
            max_steal_pct=args.max_steal,
        )
    except ValueError as exc:
        flag, _, why = str(exc).partition(": ")
        raise VdevperfError(flag, why) from None


def _placement(args: argparse.Namespace, default: tuple[int | None, int | None] = (None, None)) -> dict:
    """Where the endpoints run, as the table header and the JSON state it."""
    cpus = tuple(args.cpu) if args.cpu else default
    label = "unpinned" if cpus == (None, None) else f"-T {cpus[0]},{cpus[1]}".replace("None", "none")
    if not args.cpu and cpus != (None, None):
        label += " (compare's default)"
    return {"client_cpu": cpus[0], "server_cpu": cpus[1], "label": label}


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
    placement = _placement(args, COMPARE_CPUS)
    configs = _configs(args, COMPARE_CPUS)
    plan = _plan(args, rounds.DEFAULT_ROUNDS)
    if args.resume is not None:
        if args.output is not None:
            raise VdevperfError("--resume", "adds to the file it names; -o cannot go with it")
        resumed = resume(args.resume)
        if resumed.comparison:  # the same round orders as the interrupted run
            plan = dataclasses.replace(plan, seed=resumed.comparison["plan"]["seed"])
    else:
        resumed = None
    judging = bench.Judging(
        plan=plan, baseline=baseline, alpha=args.alpha, target_ci_pct=args.target_ci, placement=placement
    )
    with _stored(args, argv, resumed) as results, _options(args, plan.rounds, configs, results) as options:
        bench.compare(specs, configs, results, options, judging)
    wanted = {(s.name, c) for s in specs for c in configs}
    runs = [r for r in results.runs if (r.topology, r.config) in wanted]
    text = compare_table(runs, results.comparison or {})
    if args.aa:
        text += "\n" + noise_floor(results.comparison or {})
    _emit(args, results, text)
    return 0


def _monitor_targets(args: argparse.Namespace) -> list[Target]:
    targets = [Target(label=name, name=name) for name in args.name]
    for pid in args.pid:
        try:
            targets.append(Target(label=f"{psutil.Process(pid).name()} [{pid}]", pid=pid))
        except psutil.Error:
            raise VdevperfError(f"--pid {pid}", "no such process") from None
    return targets


def cmd_monitor(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Per-process CPU occupancy every interval, in the layout of seed 003."""
    if args.output is not None and args.output.suffix not in (".csv", ".json"):
        raise VdevperfError("-o", f"'{args.output}' must end in .csv or .json")
    if args.output is not None:
        check_writable(args.output)  # now, not after the watch
    targets = _monitor_targets(args)
    command = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not targets and not command:
        raise VdevperfError("monitor", "nothing to watch: give --name, --pid or a command after --")
    child = None
    if command:
        try:
            child = subprocess.Popen(command)
        except OSError as exc:
            raise VdevperfError(f"command {command[0]}", exc.strerror or str(exc)) from None
        targets.append(Target(label=os.path.basename(command[0]), tree_root=child.pid))
    labels = [t.label for t in targets]
    monitor = Monitor(targets)
    until = time.monotonic() + args.length if args.length else None
    rows = []
    print(occupancy.header(labels), flush=True)
    try:
        for row in watch(monitor, args.interval, until, lambda: child is None or child.poll() is None):
            rows.append(row)
            print(occupancy.row_line(row), flush=True)
    except Interrupted:
        pass  # like pidstat: an interrupt ends the watch, and the total still follows
    finally:
        if child is not None and child.poll() is None:
            child.terminate()  # we started it: stop it by its pid, and reap it
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    total = monitor.total()
    print(occupancy.total_line(total))
    if args.output is not None:
        text = (
            occupancy.to_csv(labels, rows, total)
            if args.output.suffix == ".csv"
            else occupancy.to_json(labels, args.interval, rows, total)
        )
        if write_kept(args.output, text, _note) is None:
            print(text, end="")
    return child.returncode if child is not None and child.returncode and child.returncode > 0 else 0


def cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Stored results as tables, CSV or JSON."""
    if len(args.files) == 1 and not args.files[0].is_dir():
        document = load(args.files[0])  # one file: a compare's verdicts come with it
        runs, comparison = runs_of(args.files[0], document), document["comparison"]
    else:
        runs, comparison = load_runs(args.files, _note), None
    print(formats.render(runs, args.format, args.group_by, comparison))
    return 0


def cmd_diff(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """NEW against BASE, metric by metric, with a significance verdict; exit 1 on a regression past the limit."""
    rows = diff.diff(load_runs([args.base], _note), load_runs([args.new], _note), args.alpha)
    print(diff_table(rows))
    if args.fail_on_regression is not None:
        found = diff.regressions(rows, args.fail_on_regression)
        for row, change in found:
            print(
                f"regression: {row.topology} {row.test} {change.metric} {change.change_pct:+.1f} % "
                f"(p = {change.p_value:.3g})",
                file=sys.stderr,
            )
        if found:
            return EXIT_REGRESSION
    return 0


def cmd_plot(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Draw stored results into a PNG or SVG file."""
    if args.kind == "scale":
        plot.scale(documents_of_kind(args.files, "scale"), args.output)
    else:
        getattr(plot, args.kind)(load_runs(args.files, _note), args.output)
    print(f"plot: {args.output}")
    return 0


def _log_line(line: str) -> None:
    # One write per line, with no lock: sessions log from their threads while others fork
    # endpoints, and a child must never inherit a held lock on sys.stderr.
    os.write(sys.stderr.fileno(), f"vdevperf server: {line}\n".encode(errors="replace"))


def cmd_server(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Serve the server half of tests to authenticated remote clients until SIGINT/SIGTERM."""
    token = read_token(args.token_file)
    try:
        config = ServerConfig(
            token=token,
            bind=args.bind,
            port=args.port,
            max_duration_s=args.max_duration,
            max_clients=args.max_clients,
            idle_timeout_s=args.idle_timeout,
            max_pending=args.max_pending,
            max_pending_per_address=args.max_pending_per_address,
            auth_backoff_s=args.auth_backoff,
            max_endpoints=args.max_endpoints,
            max_session_s=args.max_session_time or max(600.0, args.max_duration),
        )
    except ValueError as exc:
        flag, _, why = str(exc).partition(": ")
        raise VdevperfError(flag, why) from None
    server = Server(config, log=_log_line)
    try:
        address = server.bind()
        _log_line(
            f"listening on {address} (at most {config.max_clients} client(s) for "
            f"{config.max_session_s:g} s each, tests up to {config.max_duration_s:g} s, "
            f"{config.max_endpoints} endpoint processes, idle timeout {config.idle_timeout_s:g} s; "
            f"{config.max_pending} handshakes, {config.max_pending_per_address} per address)"
        )
        server.serve_forever()
    finally:
        server.close()
    return 0


def cmd_cleanup(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Remove namespaces and processes left by runs whose process is gone."""
    report = cleanup.cleanup()
    print(report.summary())
    return 0


def cmd_doctor(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Print what this kernel and these privileges allow."""
    print(probe.doctor_report())
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Sequence[str]], int]] = {
    "run": cmd_run,
    "compare": cmd_compare,
    "monitor": cmd_monitor,
    "report": cmd_report,
    "diff": cmd_diff,
    "plot": cmd_plot,
    "scale": cmd_scale,
    "lab": cmd_lab,
    "server": cmd_server,
    "cleanup": cmd_cleanup,
    "doctor": cmd_doctor,
}


def parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    top = _Parser(prog="vdevperf", description="netperf-style throughput and CPU cost of virtual network devices")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run tests on one topology, or against a vdevperf server")
    run.add_argument("topology", nargs="?", help="bundled topology name (e.g. veth) or path to a .toml file")
    _add_test_flags(run, "TCP_STREAM")
    run.add_argument(
        "--offload-matrix",
        type=_features,
        metavar="FEATURE,...",
        help="run the test once per on/off combination of these offloads (2^k runs), in "
        "interleaved rounds, each against all on",
    )
    run.add_argument(
        "--rounds",
        type=whole(),
        metavar="N",
        help=f"with --offload-matrix: rounds over the combinations (default {MATRIX_ROUNDS})",
    )
    run.add_argument(
        "--alpha",
        type=fraction,
        default=0.05,
        help="with --offload-matrix: significance level of the verdicts (default 0.05)",
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
    monitor = sub.add_parser("monitor", help="per-process CPU occupancy over time (processes, PIDs, a command)")
    monitor.add_argument(
        "--name",
        action="append",
        type=_pattern,
        default=[],
        help="watch every process whose name starts with NAME (ksoftirqd matches ksoftirqd/0, "
        "ksoftirqd/1), or matches NAME as a shell glob if it holds *, ? or [ "
        "('kworker/*:1*'); the name is the process name or its program's file name",
    )
    monitor.add_argument("--pid", action="append", type=whole(), default=[], help="watch this process")
    monitor.add_argument(
        "--interval",
        type=number_in(INTERVAL_S, "s"),
        default=1.0,
        help=f"seconds between rows ({span(INTERVAL_S, 's')}; default 1)",
    )
    monitor.add_argument(
        "-l",
        "--length",
        type=number_in(LENGTH_S, "s"),
        help=f"stop after this many seconds ({span(LENGTH_S, 's')}; default: until the command exits or Ctrl-C)",
    )
    monitor.add_argument("-o", "--output", type=Path, help="also write the table to FILE.csv or FILE.json")
    monitor.add_argument(
        "program", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS]: start it and watch it with its descendants"
    )
    report = sub.add_parser("report", help="show stored results again (tables, CSV, JSON)")
    report.add_argument("files", nargs="+", type=Path, help="result files or directories of them")
    report.add_argument("--format", choices=formats.FORMATS, default="plain")
    report.add_argument("--group-by", choices=list(formats.GROUPS))
    differ = sub.add_parser("diff", help="compare two result sets, with significance")
    differ.add_argument("base", type=Path, help="result file or directory: the reference")
    differ.add_argument("new", type=Path, help="result file or directory: compared to BASE")
    differ.add_argument(
        "--alpha", type=fraction, default=0.05, help="significance level of Welch's t-test (default 0.05)"
    )
    differ.add_argument(
        "--fail-on-regression",
        type=float,
        metavar="PCT",
        help="exit 1 if a significant change for the worse exceeds PCT %%",
    )
    plotter = sub.add_parser("plot", help="draw stored results (needs vdevperf[plot])")
    plotter.add_argument("files", nargs="+", type=Path, help="result files or directories of them")
    plotter.add_argument("--kind", choices=plot.KINDS, default="bars")
    plotter.add_argument("-o", "--output", type=Path, required=True, help="OUT.png or OUT.svg")
    server = sub.add_parser("server", help="serve tests to vdevperf clients on other hosts (run --remote)")
    server.add_argument(
        "--bind", default="::", metavar="ADDR", help="address to listen on (default ::, every IPv6 and IPv4 address)"
    )
    server.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0: any free port, printed at start)",
    )
    server.add_argument(
        "--token-file",
        type=Path,
        required=True,
        metavar="FILE",
        help="the shared secret, at least 128 bits (32 hex digits), in a file of yours of mode 600",
    )
    server.add_argument(
        "--max-duration",
        type=seconds,
        default=120.0,
        metavar="S",
        help="longest test accepted, warm-up included; longer ones are refused and a test "
        "still running past its length is killed (default 120)",
    )
    server.add_argument(
        "--max-clients",
        type=whole(),
        default=4,
        metavar="N",
        help="authenticated clients served at once; one more is told the server is busy (default 4)",
    )
    server.add_argument(
        "--idle-timeout",
        type=seconds,
        default=60.0,
        metavar="S",
        help="end a session that sends nothing for this long between tests (default 60)",
    )
    server.add_argument(
        "--max-session-time",
        type=seconds,
        metavar="S",
        help="end a session this long after it authenticated, and refuse a test that would end "
        "later, so that no client keeps its slot (default 600, or --max-duration if longer)",
    )
    server.add_argument(
        "--max-endpoints",
        type=whole(),
        default=64,
        metavar="N",
        help="endpoint processes of all sessions together; a test that would pass it is told the "
        "server is busy (default 64)",
    )
    server.add_argument(
        "--max-pending",
        type=whole(),
        default=64,
        metavar="N",
        help="connections authenticating at once; a new one takes the slot of the oldest (default 64)",
    )
    server.add_argument(
        "--max-pending-per-address",
        type=whole(),
        default=8,
        metavar="N",
        help="connections authenticating at once from one address (IPv6: one /64); a new one "
        "takes the slot of that address's oldest (default 8)",
    )
    server.add_argument(
        "--auth-backoff",
        type=seconds_or_zero,
        default=1.0,
        metavar="S",
        help="after a failed authentication, turn away that address for S seconds, doubled "
        "with each further failure up to 64 S; 0: never (default 1)",
    )
    sub.add_parser("cleanup", help="remove leftovers of dead vdevperf runs")
    sub.add_parser("doctor", help="show supported device kinds, privileges, kernel")
    add_scale_parser(sub)
    add_lab_parser(sub)
    return top


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vdevperf`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = parser().parse_args(argv)
        return COMMANDS[args.command](args, argv)
    except VdevperfError as exc:
        print(f"vdevperf: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Interrupted as exc:
        # Teardown already ran in the finally blocks; now die the way we were asked to.
        print(f"vdevperf: interrupted by {signal.Signals(exc.signum).name}", file=sys.stderr)
        sys.stdout.flush()
        signal.signal(exc.signum, signal.SIG_DFL)
        os.kill(os.getpid(), exc.signum)
        return 128 + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
