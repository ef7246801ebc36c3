"""Plots of stored results with matplotlib (the optional ``vdevperf[plot]`` dependency).

Each kind draws from result data only, never from a live run:
- bars: rate and service demand per topology and test, with the confidence
  interval (or the iterations' spread) as error bars;
- timeseries: rate and CPU utilisation per sampling interval of each run;
- offload: an offload matrix, rate and service demand per combination;
- sweep: a sweep (--sweep), rate and service demand against the swept value, one line per
  topology, with each value's 95 % interval over its rounds;
- cdf: each RR run's latency CDF (log x), from its merged histogram, one line per
  topology and test;
- scale: namespace creation rate at each mark, per method (``vdevperf scale`` results).
Figures are written as PNG or SVG, with titles, units and legends.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from vdevperf import sweeps
from vdevperf.errors import VdevperfError
from vdevperf.measure.stats import t_quantile
from vdevperf.model import RunResult, RunStatus
from vdevperf.report.diff import metric
from vdevperf.report.latency import cdf_us, latency_runs
from vdevperf.report.rows import row
from vdevperf.traits import Kind

KINDS = ("bars", "timeseries", "offload", "sweep", "cdf", "scale")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise VdevperfError("plot", "needs matplotlib: pip install 'vdevperf[plot]'") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _error(run: RunResult, name: str) -> float:
    """Half the confidence interval if one was computed, else the iterations' standard deviation."""
    if run.confidence is not None and name == "rate":
        interval = run.confidence.intervals[0]
        return interval.half_width or 0.0
    values = [v for v in (metric(run, name, it.metrics) for it in run.iterations) if v is not None]
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _save(fig, out: Path) -> None:
    if out.suffix not in (".png", ".svg"):
        raise VdevperfError("-o", f"'{out}' must end in .png or .svg")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def bars(runs: Sequence[RunResult], out: Path) -> None:
    """Rate and service demand per topology, one panel pair per test."""
    plt = _pyplot()
    measured = [r for r in runs if r.status is RunStatus.OK]
    tests = list(dict.fromkeys(str(r.config.test) for r in measured))
    if not tests:
        raise VdevperfError("plot", "no measured runs to draw")
    fig, axes = plt.subplots(len(tests), 2, figsize=(11, 3.6 * len(tests)), squeeze=False)
    for (ax_rate, ax_demand), test in zip(axes, tests, strict=True):
        chosen = [r for r in measured if str(r.config.test) == test]
        names = [r.topology for r in chosen]
        rows = [row(r) for r in chosen]
        ax_rate.bar(
            names, [r.rate for r in rows], yerr=[_error(r, "rate") for r in chosen], capsize=4, color="tab:blue"
        )
        shape = "throughput" if chosen[0].config.test.traits.kind is Kind.STREAM else "transaction rate"
        ax_rate.set_title(f"{test}: {shape}")
        ax_rate.set_ylabel(rows[0].rate_units)
        ax_demand.bar(
            names,
            [r.service_demand for r in rows],
            yerr=[_error(r, "service_demand") for r in chosen],
            capsize=4,
            color="tab:orange",
        )
        ax_demand.set_title(f"{test}: service demand (CPU cost per unit of work)")
        ax_demand.set_ylabel(rows[0].demand_units)
        for ax in (ax_rate, ax_demand):
            ax.tick_params(axis="x", labelrotation=20)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle("vdevperf: rate and CPU cost per topology (error bars: confidence interval or spread)")
    _save(fig, out)


def cdf(runs: Sequence[RunResult], out: Path) -> None:
    """Latency CDF of each RR run (all flows and iterations merged), log x, with p50/p99 marked."""
    plt = _pyplot()
    found = latency_runs(runs)
    if not found:
        raise VdevperfError("plot", "no measured RR run with a latency histogram to draw")
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for run, hist in found:
        values, fractions = cdf_us(hist)
        label = f"{run.topology} {run.config.test}" + (f" {run.sweep['label']}" if run.sweep else "")
        ax.step(values, fractions, where="post", label=label)
    for q in (0.5, 0.99):
        ax.axhline(q, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.005)
    ax.set_xlabel("latency (µs, log scale; steps at our bucket bounds)")
    ax.set_ylabel("fraction of transactions at or below")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.suptitle("vdevperf: latency CDF per topology and test (dotted: p50, p99)")
    _save(fig, out)


def timeseries(runs: Sequence[RunResult], out: Path) -> None:
    """Rate (one panel per unit) and CPU utilisation per sampling interval, one line per run."""
    plt = _pyplot()
    measured = [r for r in runs if r.status is RunStatus.OK and r.iterations and r.iterations[-1].series]
    if not measured:
        raise VdevperfError("plot", "no run with a time series to draw")
    units = list(dict.fromkeys(row(r).rate_units for r in measured))
    fig, axes = plt.subplots(len(units) + 1, 1, figsize=(10, 3.2 * (len(units) + 1)), sharex=True)
    rate_axes = dict(zip(units, axes, strict=False))
    ax_cpu = axes[-1]
    for run in measured:
        series = run.iterations[-1].series or []  # never empty: `measured` has a series
        t = [s["t_s"] for s in series]
        label = f"{run.topology} {run.config.test}"
        rate_axes[row(run).rate_units].plot(t, [s["rate"] for s in series], marker="o", markersize=3, label=label)
        ax_cpu.plot(t, [s["cpu_util_pct"] for s in series], marker="o", markersize=3, label=label)
    for unit, ax in rate_axes.items():
        ax.set_ylabel(unit)
        ax.set_title(f"rate per interval ({unit}, counted at the receiver)")
    ax_cpu.set_ylabel("% of machine")
    ax_cpu.set_title("CPU utilisation per interval")
    ax_cpu.set_xlabel("seconds since the window opened")
    ax_cpu.set_ylim(0, 100)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    _save(fig, out)


def offload(runs: Sequence[RunResult], out: Path) -> None:
    """An offload matrix: rate and service demand per combination, relative to the first."""
    plt = _pyplot()
    swept = [r for r in runs if r.status is RunStatus.OK and r.offload and "combination" in r.offload]
    if not swept:
        raise VdevperfError("plot", "no offload-matrix runs to draw (run with --offload-matrix)")
    combos = [(r.offload or {})["combination"] for r in swept]
    labels = ["\n".join(f"{f}={'on' if on else 'off'}" for f, on in combo.items()) for combo in combos]
    rows = [row(r) for r in swept]
    fig, (ax_rate, ax_demand) = plt.subplots(2, 1, figsize=(min(max(7, 1.1 * len(swept) + 2), 16), 8), sharex=True)
    ax_rate.bar(range(len(rows)), [r.rate for r in rows], color="tab:blue")
    ax_rate.set_ylabel(rows[0].rate_units)
    ax_rate.set_title(f"{swept[0].topology} {swept[0].config.test}: rate")
    ax_demand.bar(range(len(rows)), [r.service_demand for r in rows], color="tab:orange")
    ax_demand.set_ylabel(rows[0].demand_units)
    ax_demand.set_title("service demand (CPU cost per unit of work)")
    for ax in (ax_rate, ax_demand):
        ax.set_xticks(range(len(rows)), labels, fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("offload matrix")
    _save(fig, out)


def _interval(run: RunResult, name: str, level_pct: float = 95.0) -> tuple[float, float] | None:
    """The mean of a metric over a run's rounds and half its t interval; None without figures."""
    values = [v for v in (metric(run, name, it.metrics) for it in run.iterations) if v is not None]
    if not values:
        return None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, t_quantile(level_pct, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5


def sweep(runs: Sequence[RunResult], out: Path) -> None:
    """A sweep: rate and service demand against the swept value (log scale), one line per topology
    and one panel pair per test; error bars are each value's 95 % t interval over its rounds. A value
    a topology refused has no point."""
    plt = _pyplot()
    swept = [r for r in runs if r.sweep is not None]
    measured = [r for r in swept if r.status is RunStatus.OK]
    if not measured:
        raise VdevperfError("plot", "no measured sweep runs to draw (run with --sweep)")
    first = measured[0].sweep or {}
    tests = list(dict.fromkeys(str(r.config.test) for r in measured))
    fig, axes = plt.subplots(len(tests), 2, figsize=(11, 3.8 * len(tests)), squeeze=False)
    for (ax_rate, ax_demand), test in zip(axes, tests, strict=True):
        chosen = [r for r in measured if str(r.config.test) == test]
        for topology in dict.fromkeys(r.topology for r in chosen):
            line = sorted((r for r in chosen if r.topology == topology), key=lambda r: (r.sweep or {})["value"])
            xs = [(r.sweep or {})["value"] for r in line]
            for ax, name in ((ax_rate, "rate"), (ax_demand, "service_demand")):
                points = [(x, i) for x, i in zip(xs, (_interval(r, name) for r in line), strict=True) if i]
                ax.errorbar(
                    [x for x, _ in points],
                    [i[0] for _, i in points],
                    yerr=[i[1] for _, i in points],
                    marker="o",
                    capsize=4,
                    label=topology,
                )
        units = row(chosen[0])
        ax_rate.set_title(f"{test}: rate")
        ax_rate.set_ylabel(units.rate_units)
        ax_demand.set_title(f"{test}: service demand (CPU per unit of work)")
        ax_demand.set_ylabel(units.demand_units)
        values = sorted({(r.sweep or {})["value"] for r in swept})
        for ax in (ax_rate, ax_demand):
            ax.set_xscale("log", base=2)
            ax.set_xticks(values, [sweeps.label_of(_point(swept, v)).partition("=")[2] for v in values])
            ax.minorticks_off()
            ax.set_xlabel(
                f"{first.get('param', '?')} ({'bytes per message' if first.get('param') == 'size' else 'bytes'})"
            )
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    fig.suptitle(f"vdevperf sweep {sweeps.text_of(first)} (error bars: 95 % interval over the rounds)")
    _save(fig, out)


def _point(runs: Sequence[RunResult], value: int) -> dict | None:
    return next((r.sweep for r in runs if r.sweep is not None and r.sweep["value"] == value), None)


def scale(documents: Sequence[dict], out: Path) -> None:
    """Namespace creation rate at each mark, per method, from ``vdevperf scale`` documents."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    drawn = 0
    for doc in documents:
        for method in doc.get("methods", []):
            marks = method.get("marks", [])
            if marks:
                ax.plot(
                    [m["count"] for m in marks],
                    [m["rate_per_s"] for m in marks],
                    marker="o",
                    label=method.get("method", "?"),
                )
                drawn += 1
    if not drawn:
        raise VdevperfError("plot", "no scale marks to draw (the files hold no vdevperf scale results)")
    ax.set_xlabel("namespaces created")
    ax.set_ylabel("namespaces per second since the previous mark")
    ax.set_title("namespace creation rate at each mark")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out)
