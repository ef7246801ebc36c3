"""Stored results rendered again: tables in tabulate's formats, CSV and JSON rows, grouped.

The rows are report.rows' Row objects, so a re-rendered report shows the
same figures as the run that measured them, and CSV/JSON carry the numbers
unrounded (a CSV parses back to exactly what the result file holds). CSV
text cells a spreadsheet would run as formulas are neutralised (report.cells).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Sequence

from vdevperf import sweeps
from vdevperf.model import RunResult
from vdevperf.report.cells import cell
from vdevperf.report.rows import Row, row
from vdevperf.report.table import compare_table, run_table, sweep_table

# --format names and the tabulate format each one is.
TABLE_FORMATS = {"plain": "simple", "github": "github", "markdown": "pipe"}
FORMATS = (*TABLE_FORMATS, "csv", "json")


def _offload_label(run: RunResult) -> str:
    return " ".join(run.offload["requested"]) if run.offload else "default offloads"


GROUPS: dict[str, Callable[[RunResult], str]] = {
    "topology": lambda run: run.topology,
    "test": lambda run: str(run.config.test),
    "offload": _offload_label,
    "sweep": lambda run: sweeps.label_of(run.sweep) or "not swept",
}
FIELDS = [f.name for f in dataclasses.fields(Row)]


def grouped(runs: Sequence[RunResult], group_by: str | None) -> list[tuple[str | None, list[RunResult]]]:
    """Runs in groups (in order of first appearance), or one unnamed group."""
    if group_by is None:
        return [(None, list(runs))]
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(GROUPS[group_by](run), []).append(run)
    return list(groups.items())


def to_csv(runs: Sequence[RunResult]) -> str:
    """One CSV line per run: every Row field, numbers unrounded, no text a spreadsheet would run."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    for run in runs:
        writer.writerow({k: ("" if v is None else cell(v)) for k, v in dataclasses.asdict(row(run)).items()})
    return out.getvalue()


def to_json(runs: Sequence[RunResult]) -> str:
    """A JSON list of rows, every Row field."""
    return json.dumps([dataclasses.asdict(row(run)) for run in runs], indent=1) + "\n"


def render(runs: Sequence[RunResult], fmt: str, group_by: str | None = None, comparison: dict | None = None) -> str:
    """The report in ``fmt``; tables get one heading and table per group, or, for one compare's
    file (``comparison`` given, no grouping), its table of paired ratios and verdicts again."""
    if comparison and comparison.get("baseline") and fmt in TABLE_FORMATS and group_by is None:
        if any(r.sweep is not None for r in runs):
            return sweep_table(runs, comparison, TABLE_FORMATS[fmt])
        return compare_table(runs, comparison, TABLE_FORMATS[fmt])
    groups = grouped(runs, group_by)
    if fmt == "csv":
        return to_csv([r for _, members in groups for r in members])
    if fmt == "json":
        return to_json([r for _, members in groups for r in members])
    parts = []
    for name, members in groups:
        heading = f"{group_by}: {name}" if name is not None else None
        if heading:
            parts.append(f"## {heading}" if fmt == "markdown" else heading)
        parts.append(run_table(members, TABLE_FORMATS[fmt]))
    return "\n\n".join(parts)
