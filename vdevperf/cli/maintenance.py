"""``vdevperf cleanup`` and ``vdevperf doctor``: leftovers of dead runs removed; what this host supports."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from vdevperf.cli.common import Subparsers
from vdevperf.topology import cleanup, probe


def add_parsers(sub: Subparsers) -> None:
    """Add ``cleanup`` and ``doctor`` to the subcommands."""
    sub.add_parser("cleanup", help="remove leftovers of dead vdevperf runs")
    sub.add_parser("doctor", help="show supported device kinds, privileges, kernel")


def cmd_cleanup(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Remove namespaces and processes left by runs whose process is gone."""
    report = cleanup.cleanup()
    print(report.summary())
    return 0


def cmd_doctor(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Print what this kernel and these privileges allow."""
    print(probe.doctor_report())
    return 0
