"""``vdevperf monitor``: per-process CPU occupancy over time, of processes by name or pid, or of a command.

Like pidstat: a row per interval until -l runs out, the command exits or
Ctrl-C, then the total; optionally the table as CSV or JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from vdevperf.cli.argtypes import number_in, pattern, whole
from vdevperf.cli.common import Subparsers, note, supervised
from vdevperf.errors import Interrupted, VdevperfError
from vdevperf.measure.procmon import Monitor, Row, Target, watch
from vdevperf.model import INTERVAL_S, LENGTH_S, span
from vdevperf.report import occupancy
from vdevperf.results import check_writable, write_kept


def add_parser(sub: Subparsers) -> None:
    """Add ``monitor`` to the subcommands."""
    monitor = sub.add_parser("monitor", help="per-process CPU occupancy over time (processes, PIDs, a command)")
    monitor.add_argument(
        "--name",
        action="append",
        type=pattern,
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


def _targets(args: argparse.Namespace) -> list[Target]:
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
    targets = _targets(args)
    command = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not targets and not command:
        raise VdevperfError("monitor", "nothing to watch: give --name, --pid or a command after --")
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        child = stack.enter_context(supervised(command)) if command else None
        if child is not None:
            targets.append(Target(label=os.path.basename(command[0]), tree_root=child.pid))
        labels = [t.label for t in targets]
        monitor = Monitor(targets)
        until = time.monotonic() + args.length if args.length else None
        print(occupancy.header(labels), flush=True)
        try:
            for row in watch(monitor, args.interval, until, lambda: child is None or child.poll() is None):
                rows.append(row)
                print(occupancy.row_line(row), flush=True)
        except Interrupted:
            pass  # like pidstat: an interrupt ends the watch, and the total still follows
    total = monitor.total()
    print(occupancy.total_line(total))
    if args.output is not None:
        _write(args.output, labels, args.interval, rows, total)
    return child.returncode if child is not None and child.returncode and child.returncode > 0 else 0


def _write(output: Path, labels: list[str], interval: float, rows: list[Row], total: Row) -> None:
    text = (
        occupancy.to_csv(labels, rows, total)
        if output.suffix == ".csv"
        else occupancy.to_json(labels, interval, rows, total)
    )
    if write_kept(output, text, note) is None:
        print(text, end="")
