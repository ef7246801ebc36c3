"""Command line: the parser of every subcommand and the dispatch to one ``cmd_*`` per subcommand.

One module per command family: ``measuring`` (run, compare), ``monitor``,
``reports`` (report, diff, plot, export-hdr), ``server``, ``maintenance`` (cleanup,
doctor), ``scale`` and ``lab``; ``argtypes`` holds every flag's value type and
``common`` what they share (result file, progress line, exit codes, signals).
Each command is a thin layer: its flags become typed configs, one operation of
the layers below runs, and the command formats what comes back.

Exit status: 0 success, 2 bad input or an expected failure (one line on
stderr, ``vdevperf: <what>: <why>``), 1 reserved for regressions found by a
later ``diff``. On SIGINT/SIGTERM everything is torn down, then the process
dies by the same signal, so callers see how it ended.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vdevperf.cli import lab, maintenance, measuring, monitor, reports, scale, server
from vdevperf.cli.common import EXIT_ERROR, EXIT_REGRESSION, Command, Parser, dispatch

__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_REGRESSION", "main", "parser"]

COMMANDS: dict[str, Command] = {
    "run": measuring.cmd_run,
    "compare": measuring.cmd_compare,
    "monitor": monitor.cmd_monitor,
    "report": reports.cmd_report,
    "diff": reports.cmd_diff,
    "plot": reports.cmd_plot,
    "export-hdr": reports.cmd_export_hdr,
    "server": server.cmd_server,
    "cleanup": maintenance.cmd_cleanup,
    "doctor": maintenance.cmd_doctor,
    "scale": scale.cmd_scale,
    "lab": lab.cmd_lab,
}


def parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand, in the order ``--help`` lists them."""
    top = Parser(prog="vdevperf", description="netperf-style throughput and CPU cost of virtual network devices")
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)
    measuring.add_parsers(sub)
    monitor.add_parser(sub)
    reports.add_parsers(sub)
    server.add_parser(sub)
    maintenance.add_parsers(sub)
    scale.add_parser(sub)
    lab.add_parser(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vdevperf`` console script."""
    return dispatch(parser, COMMANDS, list(sys.argv[1:] if argv is None else argv))
