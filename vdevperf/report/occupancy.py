"""Per-process CPU occupancy as text (seed 003's layout), CSV and JSON.

The text layout: the labels listed first, then three header lines (label,
quantity, unit) and one row per interval: date, time to the millisecond,
interval length, and one ``occ`` column per label in % of one CPU; a last
``total`` row gives the mean over the whole run. An empty cell means no
process of that label existed at that moment.

Labels come from command lines and process names, which may hold control
characters: the text layout escapes them, and CSV cells a spreadsheet would
run as formulas are neutralised (report.cells).
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections.abc import Sequence

from vdevperf.errors import printable
from vdevperf.measure.procmon import Row
from vdevperf.report.cells import cells

_OCC_WIDTH = 8


def _stamp(timestamp: float) -> tuple[str, str]:
    moment = datetime.datetime.fromtimestamp(timestamp)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _line(date: str, clock: str, dt: str, cells: Sequence[str]) -> str:
    return f"{date:<10} {clock:<12}{dt:>7}" + "".join(f"{c:>{_OCC_WIDTH}}" for c in cells)


def _occ(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def header(labels: Sequence[str]) -> str:
    """The labels and the three header lines."""
    keys = [f"L{i}" for i in range(len(labels))]
    lines = [
        "Labels:",
        *(f"   {k}: {printable(name)}" for k, name in zip(keys, labels, strict=True)),
        _line("-", "-", "-", keys),
        _line("date", "time", "dt", ["occ"] * len(keys)),
        _line("yyyy/mm/dd", "hh:mm:ss.dec", "(s)", ["(%)"] * len(keys)),
    ]
    return "\n".join(lines)


def row_line(row: Row) -> str:
    """One interval as a table line."""
    date, clock = _stamp(row.timestamp)
    return _line(date, clock, f"{row.dt_s:.3f}", [_occ(v) for v in row.occupancy_pct])


def total_line(total: Row) -> str:
    """The whole run: mean occupancy per label."""
    return _line("total", "", f"{total.dt_s:.3f}", [_occ(v) for v in total.occupancy_pct])


def to_csv(labels: Sequence[str], rows: Sequence[Row], total: Row) -> str:
    """The table as CSV: one line per interval, then the total; no text a spreadsheet would run."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(cells(["date", "time", "dt_s", *labels]))
    for r in rows:
        writer.writerow(cells([*_stamp(r.timestamp), f"{r.dt_s:.3f}", *(_occ(v) for v in r.occupancy_pct)]))
    writer.writerow(cells(["total", "", f"{total.dt_s:.3f}", *(_occ(v) for v in total.occupancy_pct)]))
    return out.getvalue()


def to_json(labels: Sequence[str], interval_s: float, rows: Sequence[Row], total: Row) -> str:
    """The table as JSON, with times in ISO 8601 and occupancy in % of one CPU (null: no process)."""

    def record(r: Row) -> dict:
        return {
            "time": datetime.datetime.fromtimestamp(r.timestamp).isoformat(timespec="milliseconds"),
            "dt_s": r.dt_s,
            "occupancy_pct": list(r.occupancy_pct),
        }

    document = {
        "labels": list(labels),
        "interval_s": interval_s,
        "unit": "% of one CPU",
        "rows": [record(r) for r in rows],
        "total": {"dt_s": total.dt_s, "occupancy_pct": list(total.occupancy_pct)},
    }
    return json.dumps(document, indent=1) + "\n"
