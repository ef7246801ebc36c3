"""Text tables of runs (tabulate), in netperf's units and column order."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from vdevperf.model import RunResult
from vdevperf.report.rows import Row, footnotes, relative_rows, row


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _figures(r: Row) -> list[str]:
    if r.rate is None:
        return [r.note, "", "", "", "", ""]
    return [_num(r.rate), r.rate_units, _num(r.cpu_util_pct), _num(r.softirq_pct),
            _num(r.service_demand, 3), r.demand_units]


def _with_notes(table: str, runs: Sequence[RunResult]) -> str:
    return "\n".join([table, *footnotes(runs)])


def run_table(runs: Sequence[RunResult], fmt: str = "simple") -> str:
    """One row per run: rate, CPU utilisation, softirq share and service demand."""
    headers = ["Topology", "Test", "Result", "Units", "CPU util %", "softirq %", "Svc demand", "Units"]
    table = tabulate([[r.topology, r.test, *_figures(r)] for r in map(row, runs)],
                     headers=headers, tablefmt=fmt, disable_numparse=True, colalign=("left", "left") + ("right",) * 6)
    return _with_notes(table, runs)


def compare_table(runs: Sequence[RunResult], baseline: str, fmt: str = "simple") -> str:
    """Like run_table, with rate and service demand relative to ``baseline``."""
    headers = ["Topology", "Test", "Result", "Units", f"vs {baseline}", "CPU util %", "softirq %",
               "Svc demand", "Units", f"vs {baseline}"]
    body = []
    for r in relative_rows(runs, baseline):
        fig = _figures(r)
        if r.rate is None:
            body.append([r.topology, r.test, r.note, "", "", "", "", "", "", ""])
        else:
            body.append([r.topology, r.test, fig[0], fig[1], _ratio(r.rate_ratio), fig[2], fig[3],
                         fig[4], fig[5], _ratio(r.demand_ratio)])
    table = tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True,
                     colalign=("left", "left") + ("right",) * 8)
    return _with_notes(table, runs)
