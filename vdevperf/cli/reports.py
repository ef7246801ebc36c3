"""``vdevperf report``, ``diff``, ``plot`` and ``export-hdr``: stored results shown again, compared, drawn, exported."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vdevperf.cli.argtypes import fraction
from vdevperf.cli.common import EXIT_REGRESSION, Subparsers, note
from vdevperf.report import diff, formats, latency, plot
from vdevperf.report.table import diff_table
from vdevperf.results import documents_of_kind, load, load_runs, runs_of


def add_parsers(sub: Subparsers) -> None:
    """Add ``report``, ``diff``, ``plot`` and ``export-hdr`` to the subcommands."""
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
    export = sub.add_parser(
        "export-hdr",
        help="write each RR run's merged latency histogram as HdrHistogram files (needs vdevperf[hdr])",
    )
    export.add_argument("files", nargs="+", type=Path, help="result files or directories of them")
    export.add_argument(
        "-o", "--output", type=Path, required=True, help="directory for NN-topology-TEST.hlog (ns) and .hgrm (us)"
    )


def cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Stored results as tables, CSV or JSON."""
    if len(args.files) == 1 and not args.files[0].is_dir():
        document = load(args.files[0])  # one file: a compare's verdicts come with it
        runs, comparison = runs_of(args.files[0], document), document["comparison"]
    else:
        runs, comparison = load_runs(args.files, note), None
    print(formats.render(runs, args.format, args.group_by, comparison))
    return 0


def cmd_diff(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """NEW against BASE, metric by metric, with a significance verdict; exit 1 on a regression past the limit."""
    rows = diff.diff(load_runs([args.base], note), load_runs([args.new], note), args.alpha)
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
        getattr(plot, args.kind)(load_runs(args.files, note), args.output)
    print(f"plot: {args.output}")
    return 0


def cmd_export_hdr(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Stored RR latency histograms in HdrHistogram's formats, one .hlog and one .hgrm per run."""
    for path in latency.write_hdr(load_runs(args.files, note), args.output):
        print(f"export-hdr: {path}")
    return 0
