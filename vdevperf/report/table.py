"""Text tables of runs (tabulate), in netperf's units and column order.

The columns every run has come first; columns that only some tests fill
(remote CPU, latency percentiles, UDP loss and jitter, TCP retransmits, per-flow spread,
confidence, --bidir's rate per direction) appear only when a row has them, so a
plain table stays as narrow as netperf's (plus iperf3's "Retr" for TCP). Against
a vdevperf server, ``CPU util %`` and ``Svc demand``
are the client host's, ``remote CPU %`` and ``remote svc demand`` the server
host's (netperf's local and remote columns).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tabulate import tabulate

from vdevperf import sweeps
from vdevperf.measure.paired import resolvable_pct
from vdevperf.model import RunResult
from vdevperf.report.diff import DiffRow
from vdevperf.report.rows import Row, Versus, footnotes, noise_notes, relative_rows, row


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _versus(r: Row, vs: Versus | None, has: bool = True) -> str:
    """A paired comparison's cell: ``0.94x ±2.1% slower``, or ``baseline`` (where the row has the figure)."""
    if r.baseline:
        return "baseline" if has else ""
    if vs is None:
        return ""
    ci = "" if vs.half_width_pct is None else f" {_half_width(vs.half_width_pct)}"
    return f"{vs.ratio:.2f}x{ci} {vs.verdict}"


def _half_width(pct: float) -> str:
    return f"±{pct:.1f}%" if pct < 1000 else ">±999%"


@dataclass(frozen=True)
class Column:
    """A table column: header, how a measured row shows in it, and whether a row needs it."""

    header: str
    cell: Callable[[Row], str]
    wanted: Callable[[Row], bool] = lambda r: True


# Percentiles that already have a column of their own.
_FIXED_PERCENTILES = ("50", "99")


def _percentile_columns(rows: Sequence[Row], runs: Sequence[RunResult]) -> dict[str, list[Column]]:
    """One column per asked percentile (--percentiles) that no fixed column shows, in increasing order,
    grouped by where they go: "below" p50, "between" p50 and p99, "above" p99.

    They come from the runs' metrics, not from Row, so that CSV and JSON rows keep their fields."""
    asked = {
        id(r): (run.metrics.latency_percentiles_us or {}) if run.metrics else {}
        for r, run in zip(rows, runs, strict=True)
    }
    keys = sorted({k for found in asked.values() for k in found} - set(_FIXED_PERCENTILES), key=float)

    def cell(key: str) -> Callable[[Row], str]:
        return lambda r: _num(asked[id(r)].get(key), 1)

    groups: dict[str, list[Column]] = {"below": [], "between": [], "above": []}
    for k in keys:
        group = "below" if float(k) < 50 else "between" if float(k) < 99 else "above"
        groups[group].append(Column(f"p{k} us", cell(k)))
    return groups


def _direction_columns(rows: Sequence[Row], runs: Sequence[RunResult]) -> list[Column]:
    """--bidir runs: the rate each way (the test's own flows, its reverse's), which Result sums.

    From the runs' metrics, not from Row, so that CSV and JSON rows keep their fields."""
    ways = {
        id(r): (run.metrics.forward_mbps, run.metrics.reverse_mbps) if run.metrics else (None, None)
        for r, run in zip(rows, runs, strict=True)
    }

    def way(at: int) -> Column:
        header = ("Forward", "Reverse")[at]
        return Column(header, lambda r: _num(ways[id(r)][at]), lambda r: ways[id(r)][at] is not None)

    return [way(0), way(1)]


def _retransmit_columns(rows: Sequence[Row], runs: Sequence[RunResult]) -> dict[str, list[Column]]:
    """iperf3's "Retr": the senders' retransmits in the window (TCP_INFO), when a run read them; from the
    runs' metrics, as the percentiles, so that CSV and JSON rows keep their fields."""
    counts = {id(r): run.metrics.retransmits if run.metrics else None for r, run in zip(rows, runs, strict=True)}

    def cell(r: Row) -> str:
        n = counts[id(r)]
        return _num(n, 0 if n is None or float(n).is_integer() else 1)

    return {"retransmits": [Column("Retr", cell, lambda r: counts[id(r)] is not None)]}


def _jitter_columns(rows: Sequence[Row], runs: Sequence[RunResult]) -> dict[str, list[Column]]:
    """UDP runs' RFC 3550 jitter, after the loss column; from the metrics, as percentiles are."""
    jitter = {id(r): run.metrics.jitter_us if run.metrics else None for r, run in zip(rows, runs, strict=True)}
    return {"jitter": [Column("Jitter us", lambda r: _num(jitter[id(r)], 1), lambda r: jitter[id(r)] is not None)]}


def _columns(
    baseline: str | None, asked: dict[str, list[Column]] | None = None, ways: Sequence[Column] = ()
) -> list[Column]:
    relative = baseline is not None
    asked = asked or {}
    return [
        Column("Result", lambda r: _num(r.rate) + ("!" if r.unstable else "") + ("~" if r.flagged else "")),
        Column("±CI %", lambda r: _num(r.rate_ci_pct, 1), lambda r: r.rate_ci_pct is not None),
        Column("Asked", lambda r: _num(r.asked_rate), lambda r: r.asked_rate is not None),
        *ways,
        Column("Units", lambda r: r.rate_units),
        Column(f"vs {baseline}", lambda r: _versus(r, r.rate_vs), lambda r: relative),
        Column("CPU util %", lambda r: _num(r.cpu_util_pct)),
        Column(f"vs {baseline}", lambda r: _versus(r, r.cpu_vs), lambda r: relative),
        Column("softirq %", lambda r: _num(r.softirq_pct)),
        Column("steal %", lambda r: _num(r.steal_pct, 1), lambda r: r.steal_pct is not None),
        Column("Svc demand", lambda r: _num(r.service_demand, 3)),
        Column("Units", lambda r: r.demand_units),
        Column(f"vs {baseline}", lambda r: _versus(r, r.demand_vs), lambda r: relative),
        Column("remote CPU %", lambda r: _num(r.remote_cpu_util_pct), lambda r: r.remote_cpu_util_pct is not None),
        Column(
            "remote svc demand",
            lambda r: _num(r.remote_service_demand, 3),
            lambda r: r.remote_service_demand is not None,
        ),
        *asked.get("below", []),
        Column("p50 us", lambda r: _num(r.p50_latency_us, 1), lambda r: r.p50_latency_us is not None),
        *asked.get("between", []),
        Column("p99 us", lambda r: _num(r.p99_latency_us, 1), lambda r: r.p99_latency_us is not None),
        Column(
            f"vs {baseline}",
            lambda r: _versus(r, r.p99_vs, r.p99_latency_us is not None),
            lambda r: relative and r.p99_latency_us is not None,
        ),
        *asked.get("above", []),
        Column("Loss %", lambda r: _num(r.loss_pct, 3), lambda r: r.loss_pct is not None),
        *asked.get("jitter", []),
        *asked.get("retransmits", []),
        Column("Flows", lambda r: str(r.flows), lambda r: r.flows > 1),
        Column("Min flow", lambda r: _num(r.min_flow_rate), lambda r: r.flows > 1),
        Column("Max flow", lambda r: _num(r.max_flow_rate), lambda r: r.flows > 1),
        Column("Jain", lambda r: _num(r.jain_index, 3), lambda r: r.flows > 1),
    ]


def _render(
    rows: list[Row],
    runs: Sequence[RunResult],
    baseline: str | None,
    fmt: str,
    keys: Sequence[tuple[str, Callable[[RunResult, Row], str]]] = (),
) -> str:
    """The table: Topology, then the ``keys`` columns (header, cell of a run), Test, then the figures."""
    keys = [("Topology", lambda run, r: r.topology), *keys, ("Test", lambda run, r: r.test)]
    columns = [
        c
        for c in _columns(
            baseline,
            _percentile_columns(rows, runs) | _retransmit_columns(rows, runs) | _jitter_columns(rows, runs),
            _direction_columns(rows, runs),
        )
        if any(c.wanted(r) for r in rows if r.rate is not None)
    ]
    body = []
    for run, r in zip(runs, rows, strict=True):
        lead = [key(run, r) for _, key in keys]
        if r.rate is None:
            body.append(lead + [r.note] + [""] * (len(columns) - 1))
        else:
            body.append(lead + [c.cell(r) for c in columns])
    table = tabulate(
        body,
        headers=[header for header, _ in keys] + [c.header for c in columns],
        tablefmt=fmt,
        disable_numparse=True,
        colalign=("left",) * len(keys) + ("right",) * len(columns),
    )
    return "\n".join([table, *footnotes(runs)])


def run_table(runs: Sequence[RunResult], fmt: str = "simple") -> str:
    """One row per run: rate, CPU utilisation, softirq share, service demand, and what else the tests measured."""
    return _render([row(run) for run in runs], runs, None, fmt)


def compare_table(runs: Sequence[RunResult], comparison: dict, fmt: str = "simple") -> str:
    """Like run_table, with rate, CPU, service demand and p99 against the baseline: the paired
    ratio over rounds, its interval and the verdict; a header line says how it was measured."""
    baseline = comparison["baseline"]
    rows = relative_rows(runs, baseline, comparison["cells"])
    return "\n".join([comparison_header(comparison, runs), _render(rows, runs, baseline, fmt)])


def comparison_header(comparison: dict, runs: Sequence[RunResult]) -> str:
    """How a comparison was measured and judged, in one line."""
    plan, where = comparison["plan"], comparison["placement"]
    lengths = sorted({f"{r.config.duration_s:g}" for r in runs if r.iterations})
    rounds = len(comparison["orders"])
    target = f", target ±{plan['target_ci_pct']:g} %" if plan["target_ci_pct"] else ""
    return (
        f"{rounds} interleaved round(s) of {'/'.join(lengths) or '?'} s (seed {plan['seed']}{target}; "
        f"{comparison['stopped']}); placement {where.get('label', 'unpinned')}; intervals "
        f"{100 * (1 - comparison['alpha']):g} %, verdicts Holm-corrected over {len(comparison['cells'])} "
        f"cells; windows with steal above {plan['max_steal_pct']:g} % measured again"
    )


def sweep_table(runs: Sequence[RunResult], comparison: dict, fmt: str = "simple") -> str:
    """A sweep (--sweep): one row per topology, value and test, each value against the first value on
    the same topology (paired by round); a header line says how it was measured and what the baseline is."""
    swept = [r for r in runs if r.sweep is not None]
    if not swept:
        return "no sweep runs"
    first = swept[0].sweep or {}
    baseline = first.get("baseline", "")
    rows = relative_rows(swept, baseline, comparison.get("cells", []), sweeps.arm, sweeps.baseline_arm)
    title = f"sweep {sweeps.text_of(first)}: each value against {baseline} on the same topology"
    value = ("Value", lambda run, r: (run.sweep or {}).get("label", "").partition("=")[2])
    header = comparison_header(comparison, swept) if comparison else "no interleaved rounds recorded"
    return "\n".join([title, header, _render(rows, swept, baseline, fmt, [value])])


BREAKDOWN_FIELDS = ("user", "nice", "system", "irq", "softirq", "iowait", "steal", "unaccounted", "idle")


def cpu_table(runs: Sequence[RunResult], fmt: str = "simple") -> str:
    """Where the CPU time of each run went: per /proc/stat field for the machine and each CPU,
    and busy time split into client processes, server processes and the rest (last iteration)."""
    body = []
    for run in runs:
        if not run.iterations or run.iterations[-1].cpu_breakdown is None:
            continue
        parts, m = run.iterations[-1].cpu_breakdown, run.iterations[-1].metrics
        split = [_num(m.client_cpu_pct), _num(m.server_cpu_pct), _num(m.elsewhere_cpu_pct)]
        label = f"{run.topology} {run.config.test}"
        body.append([label, "all", *(_num(parts["machine"][f"{f}_pct"]) for f in BREAKDOWN_FIELDS), *split])
        for n, shares in enumerate(parts["per_cpu"]):
            body.append(["", f"cpu{n}", *(_num(shares[f"{f}_pct"]) for f in BREAKDOWN_FIELDS), "", "", ""])
    headers = ["Run", "CPU", *(f"{f} %" for f in BREAKDOWN_FIELDS), "client %", "server %", "elsewhere %"]
    return tabulate(
        body,
        headers=headers,
        tablefmt=fmt,
        disable_numparse=True,
        colalign=("left", "left") + ("right",) * (len(headers) - 2),
    )


def _combination(run: RunResult) -> str:
    combo = run.offload.get("combination", {}) if run.offload else {}
    return " ".join(f"{f}={'on' if on else 'off'}" for f, on in combo.items())


def matrix_table(runs: Sequence[RunResult], comparison: dict, fmt: str = "simple") -> str:
    """An offload sweep: one row per on/off combination, each against all on (paired by round)."""
    rows = relative_rows(runs, comparison["baseline"], comparison["cells"], _combination)
    body = []
    for run, r in zip(runs, rows, strict=True):
        probe = run.iterations[-1].capture if run.iterations else None
        body.append(
            [
                _combination(run),
                _num(r.rate) + ("~" if r.flagged else ""),
                r.rate_units,
                _versus(r, r.rate_vs),
                _num(r.cpu_util_pct),
                _num(r.service_demand, 3),
                r.demand_units,
                _versus(r, r.demand_vs),
                _num(probe["p50_bytes"], 0) if probe and probe["frames"] else "",
                _num(probe["above_mtu_pct"], 1) if probe and probe["frames"] else "",
            ]
        )
    headers = [
        "Offloads",
        "Result",
        "Units",
        "vs all on",
        "CPU util %",
        "Svc demand",
        "Units",
        "vs all on",
        "p50 frame B",
        "> MTU %",
    ]
    table = tabulate(
        body, headers=headers, tablefmt=fmt, disable_numparse=True, colalign=("left",) + ("right",) * (len(headers) - 1)
    )
    title = f"{runs[0].topology} {runs[0].config.test}, offload matrix" if runs else "offload matrix"
    return "\n".join([title, comparison_header(comparison, runs), table, *noise_notes(runs)])


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f} %"


def diff_table(rows: Sequence[DiffRow], fmt: str = "simple") -> str:
    """NEW against BASE: per metric the change and its verdict (Welch's t-test over iterations)."""
    body = []
    for r in rows:
        if not r.changes:
            body.append([r.topology, r.test, r.note] + [""] * 7)
            continue
        by_name = {c.metric: c for c in r.changes}
        rate, cpu, demand, p99 = (by_name[m] for m in ("rate", "cpu_util_pct", "service_demand", "p99_latency_us"))
        body.append(
            [
                r.topology,
                r.test,
                rate.verdict,
                _num(rate.base),
                _num(rate.new),
                _pct(rate.change_pct),
                f"{_pct(cpu.change_pct)} {cpu.verdict if cpu.verdict != rate.verdict else ''}".strip(),
                f"{_pct(demand.change_pct)} {demand.verdict}".strip() if demand.change_pct is not None else "",
                f"{_pct(p99.change_pct)} {p99.verdict}".strip() if p99.change_pct is not None else "",
                "" if rate.p_value is None else f"{rate.p_value:.3g}",
            ]
        )
    headers = [
        "Topology",
        "Test",
        "Verdict",
        "Base",
        "New",
        "Rate",
        "CPU util",
        "Svc demand",
        "p99 latency",
        "p (rate)",
    ]
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)


_METRIC_NAMES = {
    "rate": "rate",
    "cpu_util_pct": "CPU util",
    "service_demand": "service demand",
    "p99_latency_us": "p99 latency",
}


def noise_floor(comparison: dict) -> str:
    """What an A/A comparison says of this machine: per test and metric, the smallest change that
    would read as a difference at these rounds (see measure.paired.resolvable_pct)."""
    cells = comparison.get("cells", [])
    family = sum(1 for c in cells if c["p_value"] is not None)
    lines = [
        f"noise floor ({len(comparison.get('orders', []))} rounds, alpha {comparison.get('alpha')}, "
        f"{family} cells): smallest change this machine resolves, and the A/A verdicts"
    ]
    for c in cells:
        floor = resolvable_pct(c["ratios"], comparison["alpha"], family)
        lines.append(
            f"  {c['test']:<11} {_METRIC_NAMES.get(c['metric'], c['metric']):<15} "
            f"{'' if floor is None else _half_width(floor):>9}   A/A {c['geomean']:.3f}x: {c['verdict']}"
        )
    lines.append(
        "A real difference smaller than the floor reads 'no significant difference'; any other verdict "
        "here is a false positive (expected in at most alpha of A/A runs)."
    )
    return "\n".join(lines)
