"""System-wide CPU accounting from per-CPU times, netperf's way.

A snapshot is psutil's per-CPU times (read from /proc/stat) as plain tuples in
FIELDS order. Figures are derived afterwards from two snapshots, so sampling
stays a single cheap read and the raw numbers can be kept in the result and
recomputed later.

Definitions (netperf's procstat method, with two corrections):
- total time: elapsed wall-clock time times the number of CPUs;
- steal: time the host ran something else while a virtual CPU wanted to run
  (the paravirtual steal clock, exact to the nanosecond, not tick-sampled);
- busy time: total minus idle minus steal, that is the time the guest's CPUs
  really ran something (iowait counts as busy, as in netperf);
- utilisation: busy / total, in % of the whole machine; steal is its own share;
- service demand: busy CPU-µs per KB (1024 bytes) or per transaction.

First correction: netperf divides by the sum of the /proc/stat fields. Their
idle time is exact (the nohz idle clock), but user, system, irq and softirq
are sampled by the tick, and a virtual CPU that the host deschedules loses
ticks: on the 2-vCPU guest vdevperf is developed on, the fields summed to
only 90-95 % of the elapsed time under load, so netperf's ratio understated
busy time (netperf's TCP_RR read 30.8 % where elapsed minus idle gave 40 %
and the cpuidle residency 47 %, see docs/cpu.md). vdevperf measures against
the elapsed time instead and shows the gap as ``unaccounted``: neither idle
(exact) nor steal (exact), so it is busy guest time that no field received.

Second correction: steal is not the guest's work. On a busy host it swung
from 0 to 40 % between iterations here, and counted as busy it made the same
path cost five times more in one iteration than in the next. It is left out
of busy time and reported on its own (``steal_pct``).
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

FIELDS: tuple[str, ...] = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_IDLE = FIELDS.index("idle")
_SOFTIRQ = FIELDS.index("softirq")
_STEAL = FIELDS.index("steal")

CpuSnapshot = list[list[float]]


def snapshot() -> CpuSnapshot:
    """Per-CPU times in seconds, one list of FIELDS per CPU."""
    return [[getattr(cpu, name) for name in FIELDS] for cpu in psutil.cpu_times(percpu=True)]


@dataclass(frozen=True)
class CpuDelta:
    """CPU seconds spent between two snapshots, summed over all CPUs."""

    total_s: float
    idle_s: float
    softirq_s: float
    accounted_s: float
    steal_s: float = 0.0

    @property
    def busy_s(self) -> float:
        """CPU seconds the guest ran (neither idle nor stolen): utilisation's and service demand's numerator."""
        return self.total_s - self.idle_s - self.steal_s

    @property
    def util_pct(self) -> float:
        """Utilisation of the whole machine, 0-100 %."""
        return self._pct(self.busy_s)

    @property
    def softirq_pct(self) -> float:
        """Share of all CPU time spent in softirq, 0-100 %."""
        return self._pct(self.softirq_s)

    @property
    def steal_pct(self) -> float:
        """Share of all CPU time the host took away from this guest, 0-100 %."""
        return self._pct(self.steal_s)

    @property
    def unaccounted_pct(self) -> float:
        """Share of all CPU time that no /proc/stat field received (lost ticks)."""
        return self._pct(self.total_s - self.accounted_s)

    def _pct(self, seconds: float) -> float:
        return 100.0 * seconds / self.total_s if self.total_s > 0 else 0.0


def _diffs(before: list[float], after: list[float]) -> list[float]:
    return [b - a for a, b in zip(before, after, strict=True)]


def delta(start: CpuSnapshot, end: CpuSnapshot, elapsed_s: float) -> CpuDelta:
    """Machine-wide CPU seconds between two snapshots taken ``elapsed_s`` apart."""
    idle = softirq = steal = accounted = 0.0
    for before, after in zip(start, end, strict=True):
        diffs = _diffs(before, after)
        accounted += sum(diffs)
        idle += diffs[_IDLE]
        softirq += diffs[_SOFTIRQ]
        steal += diffs[_STEAL]
    return CpuDelta(
        total_s=elapsed_s * len(start), idle_s=idle, softirq_s=softirq, accounted_s=accounted, steal_s=steal
    )


def breakdown(start: CpuSnapshot, end: CpuSnapshot, elapsed_s: float) -> dict:
    """Where CPU time went between two snapshots: % of the elapsed time per FIELDS and
    ``unaccounted``, for the machine and per CPU.

    Each set of shares sums to 100 %, and the machine's shares other than idle
    and steal sum to ``delta(start, end, elapsed_s).util_pct``.
    """
    machine = [0.0] * len(FIELDS)
    per_cpu = []
    for before, after in zip(start, end, strict=True):
        diffs = _diffs(before, after)
        machine = [m + d for m, d in zip(machine, diffs, strict=True)]
        per_cpu.append(_shares(diffs, elapsed_s))
    return {"machine": _shares(machine, elapsed_s * len(start)), "per_cpu": per_cpu}


def _shares(diffs: list[float], total_s: float) -> dict[str, float]:
    if total_s <= 0:
        return dict.fromkeys([f"{name}_pct" for name in FIELDS] + ["unaccounted_pct"], 0.0)
    shares = {f"{name}_pct": 100.0 * d / total_s for name, d in zip(FIELDS, diffs, strict=True)}
    shares["unaccounted_pct"] = 100.0 * (total_s - sum(diffs)) / total_s
    return shares


def service_demand_us(cpu: CpuDelta, units: float) -> float | None:
    """Busy CPU-µs per unit of work (KB or transaction); None when no work was done."""
    return cpu.busy_s * 1e6 / units if units > 0 else None
