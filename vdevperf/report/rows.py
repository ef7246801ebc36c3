"""Table rows from runs: pure data, no formatting, so every output format shares them.

Units follow netperf: stream throughput in 10^6 bits/s, RR rates in
transactions/s, service demand in µs of CPU per KB (1024 bytes) or per
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vdevperf.model import RunResult, RunStatus


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
    rate_ratio: float | None = None
    demand_ratio: float | None = None


# What a row without figures says; the run's full reason goes in a footnote.
NOTES = {RunStatus.UNSUPPORTED: "unsupported by this kernel"}


def footnotes(runs: Sequence[RunResult]) -> list[str]:
    """One line per topology whose runs have no figures, with the reason."""
    seen: dict[str, str] = {}
    for run in runs:
        if run.status is not RunStatus.OK and run.topology not in seen:
            seen[run.topology] = f"{run.topology}: {run.reason}"
    return list(seen.values())


def row(run: RunResult) -> Row:
    """The headline figures of one run."""
    stream = run.config.test.is_stream
    units = ("10^6bits/s", "us/KB") if stream else ("Trans/s", "us/Tr")
    m = run.metrics
    if run.status is not RunStatus.OK or m is None:
        return Row(run.topology, str(run.config.test), None, units[0], None, None, None, units[1],
                   note=NOTES[run.status])
    return Row(
        topology=run.topology,
        test=str(run.config.test),
        rate=m.throughput_mbps if stream else m.transactions_per_s,
        rate_units=units[0],
        cpu_util_pct=m.cpu_util_pct,
        softirq_pct=m.softirq_pct,
        service_demand=m.service_demand_us_per_kb if stream else m.service_demand_us_per_tr,
        demand_units=units[1],
    )


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def relative_rows(runs: Sequence[RunResult], baseline: str) -> list[Row]:
    """Rows with rate and service demand relative to the ``baseline`` topology's run of the same test."""
    rows = [row(run) for run in runs]
    base = {r.test: r for r in rows if r.topology == baseline and r.rate is not None}
    out = []
    for r in rows:
        b = base.get(r.test)
        out.append(Row(**{**r.__dict__,
                          "rate_ratio": _ratio(r.rate, b.rate if b else None),
                          "demand_ratio": _ratio(r.service_demand, b.service_demand if b else None)}))
    return out
