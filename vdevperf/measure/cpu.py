"""System-wide CPU accounting from per-CPU times, netperf's way.

A snapshot is psutil's per-CPU times (read from /proc/stat) as plain tuples in
FIELDS order. Figures are derived afterwards from two snapshots, so sampling
stays a single cheap read and the raw numbers can be kept in the result and
recomputed later.

Definitions (as netperf's procstat CPU method):
- total time: the sum of FIELDS over all CPUs (guest time is already inside user);
- busy time: total minus idle (iowait counts as busy, as in netperf);
- utilisation: busy / total, in % of the whole machine;
- service demand: busy CPU-µs per KB (1024 bytes) or per transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

FIELDS: tuple[str, ...] = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_IDLE = FIELDS.index("idle")
_SOFTIRQ = FIELDS.index("softirq")

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

    @property
    def busy_s(self) -> float:
        """Non-idle CPU seconds: netperf's numerator for utilisation and service demand."""
        return self.total_s - self.idle_s

    @property
    def util_pct(self) -> float:
        """Utilisation of the whole machine, 0-100 %."""
        return 100.0 * self.busy_s / self.total_s if self.total_s > 0 else 0.0

    @property
    def softirq_pct(self) -> float:
        """Share of all CPU time spent in softirq, 0-100 %."""
        return 100.0 * self.softirq_s / self.total_s if self.total_s > 0 else 0.0


def delta(start: CpuSnapshot, end: CpuSnapshot) -> CpuDelta:
    """Machine-wide CPU seconds between two snapshots."""
    total = idle = softirq = 0.0
    for before, after in zip(start, end, strict=True):
        diffs = [b - a for a, b in zip(before, after, strict=True)]
        total += sum(diffs)
        idle += diffs[_IDLE]
        softirq += diffs[_SOFTIRQ]
    return CpuDelta(total_s=total, idle_s=idle, softirq_s=softirq)


def service_demand_us(cpu: CpuDelta, units: float) -> float | None:
    """Busy CPU-µs per unit of work (KB or transaction); None when no work was done."""
    return cpu.busy_s * 1e6 / units if units > 0 else None
