"""Table rows from runs: pure data, no formatting, so every output format shares them.

Units follow netperf: stream throughput in 10^6 bits/s, RR rates in
transactions/s, service demand in µs of CPU per KB (1024 bytes) or per
transaction, latency in µs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vdevperf.measure import noise
from vdevperf.measure.metrics import rate_key
from vdevperf.model import MetricInterval, RunResult, RunStatus


@dataclass(frozen=True)
class Versus:
    """A figure against the baseline over interleaved rounds: the geometric mean of per-round
    ratios, half its confidence interval in %, and the verdict (see measure.paired)."""

    ratio: float
    half_width_pct: float | None
    verdict: str


@dataclass(frozen=True)
class Row:
    """One line of a table: a run's headline figures, or why it has none."""

    topology: str
    test: str
    rate: float | None
    rate_units: str
    cpu_util_pct: float | None
    softirq_pct: float | None
    service_demand: float | None
    demand_units: str
    note: str = ""
    # Against the baseline, paired by round (compare): rate, CPU utilisation, service demand, p99.
    rate_vs: Versus | None = None
    cpu_vs: Versus | None = None
    demand_vs: Versus | None = None
    p99_vs: Versus | None = None
    baseline: bool = False
    steal_pct: float | None = None
    # Iterations flagged for noise (steal, other processes, other runs, migration), of how many.
    flagged: int = 0
    iterations: int = 0
    # ± half the confidence interval of the rate, % of the mean (with -i/-I).
    rate_ci_pct: float | None = None
    unstable: bool = False
    p50_latency_us: float | None = None
    p99_latency_us: float | None = None
    loss_pct: float | None = None
    flows: int = 1
    min_flow_rate: float | None = None
    max_flow_rate: float | None = None
    jain_index: float | None = None
    # Against a vdevperf server: its host's CPU utilisation and service demand (units as above).
    remote_cpu_util_pct: float | None = None
    remote_service_demand: float | None = None
    # The offered load (-b, --fq-rate, --rate) in the rate's units; None when the run was not paced.
    asked_rate: float | None = None


# What a row without figures says; the run's full reason goes in a footnote.
NOTES = {RunStatus.UNSUPPORTED: "unsupported by this kernel"}


def footnotes(runs: Sequence[RunResult]) -> list[str]:
    """Why some rows have no figures (once per topology), and which intervals were not met."""
    seen: dict[str, str] = {}
    for run in runs:
        # A sweep's value may be refused where the others ran: its reason is the value's own.
        name = run_name(run)
        if run.status is not RunStatus.OK and name not in seen:
            seen[name] = f"{name}: {run.reason}"
    notes = list(seen.values())
    for run in runs:
        c = run.confidence
        if run.unstable and c is not None:
            spans = ", ".join(f"{i.metric} ±{_relative_pct(i) or 0:.1f} %" for i in c.intervals)
            notes.append(
                f"! {run.topology} {run.config.test}: unstable, {c.level_pct:g} % confidence interval "
                f"not within ±{c.width_pct / 2:g} % after {len(run.iterations)} iterations ({spans})"
            )
    notes += noise_notes(runs)
    for run in runs:
        if run.offload and run.offload["changed"]:
            changed = "; ".join(f"{dev}: {', '.join(names)}" for dev, names in run.offload["changed"].items() if names)
            notes.append(
                f"{run_name(run)} {run.config.test} offload {' '.join(run.offload['requested'])}: "
                f"changed {changed or 'nothing'}"
            )
        probe = run.iterations[-1].capture if run.iterations else None
        if probe:
            notes.append(capture_note(run_name(run), str(run.config.test), probe))
    return notes


def run_name(run: RunResult) -> str:
    """How notes name a run's topology: with its sweep value in a sweep (``veth mtu=9000``)."""
    return run.topology if run.sweep is None else f"{run.topology} {run.sweep['label']}"


def noise_notes(runs: Sequence[RunResult]) -> list[str]:
    """One line per run with iterations flagged for noise: how many, and for what."""
    notes = []
    for run in runs:
        counts: dict[str, int] = {}
        for it in run.iterations:
            for flag in (it.noise or {}).get("flags", []):
                counts[flag] = counts.get(flag, 0) + 1
        retried = sum(len(it.retries) for it in run.iterations)
        if counts or retried:
            parts = [f"{noise.FLAG_MEANING.get(flag, flag)} in {n}" for flag, n in sorted(counts.items())]
            if retried:
                parts.append(f"{retried} noisy attempt(s) measured again")
            flagged = sum(1 for it in run.iterations if noise.distorted((it.noise or {}).get("flags")))
            left_out = f" ({flagged} left out of the ratios)" if flagged else ""
            notes.append(
                f"~ {run_name(run)} {run.config.test}: of {len(run.iterations)} iteration(s){left_out}: "
                + "; ".join(parts)
            )
    return notes


def capture_note(topology: str, test: str, probe: dict) -> str:
    """One line on what the frame-size probe saw."""
    if not probe["frames"]:
        return f"{topology} {test} frames at {probe['device']}: none captured in {probe['seconds']:.2f} s"
    return (
        f"{topology} {test} frames at {probe['device']}: {probe['frames']} captured, "
        f"p50 {probe['p50_bytes']:,.0f} B, max {probe['max_bytes']:,} B, "
        f"{probe['above_mtu_pct']:.1f} % above MTU {probe['mtu']} "
        f"(probe: {probe['seconds']:.2f} s, {probe['cpu_s']:.2f} s CPU, before the window)"
    )


def _relative_pct(interval: MetricInterval) -> float | None:
    """Half the interval in % of the mean; None for one value (no interval) or a zero mean."""
    if interval.half_width is None or not interval.mean:
        return None
    return 100 * interval.half_width / abs(interval.mean)


def row(run: RunResult) -> Row:
    """The headline figures of one run."""
    declared = run.config.test.traits.units
    units = (declared.rate, declared.service_demand)
    m = run.metrics
    if run.status is not RunStatus.OK or m is None:
        # A sweep's value can be refused by one device of a path the kernel supports: see its footnote.
        note = NOTES[run.status] if run.sweep is None else f"{run.sweep['label']} unsupported here (see below)"
        return Row(run.topology, str(run.config.test), None, units[0], None, None, None, units[1], note=note)
    ci = None
    if run.confidence is not None:
        interval = next((i for i in run.confidence.intervals if i.metric == rate_key(run.config.test)), None)
        ci = _relative_pct(interval) if interval is not None else None
    return Row(
        topology=run.topology,
        test=str(run.config.test),
        rate=getattr(m, rate_key(run.config.test)),
        rate_units=units[0],
        cpu_util_pct=m.cpu_util_pct,
        softirq_pct=m.softirq_pct,
        steal_pct=m.steal_pct,
        flagged=sum(1 for it in run.iterations if it.noise and it.noise.get("flags")),
        iterations=len(run.iterations),
        service_demand=getattr(m, declared.demand_field),
        demand_units=units[1],
        rate_ci_pct=ci,
        unstable=run.unstable,
        p50_latency_us=m.p50_latency_us,
        p99_latency_us=m.p99_latency_us,
        loss_pct=m.loss_pct,
        flows=run.config.flows,
        min_flow_rate=m.min_flow_rate,
        max_flow_rate=m.max_flow_rate,
        jain_index=m.jain_index,
        remote_cpu_util_pct=m.remote_cpu_util_pct,
        remote_service_demand=getattr(m, declared.remote_demand_field),
        asked_rate=run.config.asked_rate,
    )


# Row field holding each paired metric's comparison.
VERSUS_FIELDS = {"rate": "rate_vs", "cpu_util_pct": "cpu_vs", "service_demand": "demand_vs", "p99_latency_us": "p99_vs"}


def relative_rows(
    runs: Sequence[RunResult],
    baseline: str,
    cells: Sequence[dict],
    arm: Callable[[RunResult], str] = lambda run: run.topology,
    baseline_of: Callable[[RunResult], str] | None = None,
) -> list[Row]:
    """Rows with every paired metric against the ``baseline`` arm (or each run's own, ``baseline_of``):
    ``cells`` are a result's comparison cells (measure.paired.PairedCell.to_json)."""
    by_key = {(c["arm"], c["test"], c["metric"]): c for c in cells}
    out = []
    for run in runs:
        r = row(run)
        if r.rate is None:
            out.append(r)
            continue
        changes: dict = {"baseline": arm(run) == (baseline_of(run) if baseline_of else baseline)}
        for metric, name in VERSUS_FIELDS.items():
            c = by_key.get((arm(run), r.test, metric))
            if c is not None:
                changes[name] = Versus(c["geomean"], c["half_width_pct"], c["verdict"])
        out.append(dataclasses.replace(r, **changes))
    return out
