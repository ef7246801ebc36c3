"""Figures of one run from its raw samples, in netperf's units.

Throughput is counted where netperf counts it: bytes arriving at the receiver
for stream tests, completed transactions at the client for RR tests, both
over the window between the first and the last sample. CPU figures come from
the same two samples, so work and CPU time cover exactly the same interval.
"""

from __future__ import annotations

from vdevperf.load.endpoint import BYTES_RECEIVED, SLOTS, TRANSACTIONS
from vdevperf.measure import cpu
from vdevperf.measure.sample import Sample
from vdevperf.model import Metrics, TestName

ROLES = ("client", "server")

# Where each test's unit of work is counted: (role, slot).
WORK_COUNTER: dict[TestName, tuple[str, int]] = {
    TestName.TCP_STREAM: ("server", BYTES_RECEIVED),
    TestName.TCP_RR: ("client", TRANSACTIONS),
}


def counter_names() -> list[str]:
    """Names of the flat counter list of a sample, e.g. ``server.bytes_received``."""
    return [f"{role}.{slot}" for role in ROLES for slot in SLOTS]


def work_index(test: TestName) -> int:
    """Position of the test's work counter in a sample's counter list."""
    role, slot = WORK_COUNTER[test]
    return ROLES.index(role) * len(SLOTS) + slot


def derive(test: TestName, first: Sample, last: Sample) -> Metrics:
    """Metrics over the window from the ``first`` to the ``last`` sample."""
    elapsed = last.t_s - first.t_s
    index = work_index(test)
    work = last.counters[index] - first.counters[index]
    used = cpu.delta(first.cpu, last.cpu)
    if test.is_stream:
        kilobytes = work / 1024
        return Metrics(
            elapsed_s=elapsed,
            throughput_mbps=work * 8 / elapsed / 1e6,
            transactions_per_s=None,
            mean_latency_us=None,
            cpu_util_pct=used.util_pct,
            softirq_pct=used.softirq_pct,
            service_demand_us_per_kb=cpu.service_demand_us(used, kilobytes),
            service_demand_us_per_tr=None,
        )
    rate = work / elapsed
    return Metrics(
        elapsed_s=elapsed,
        throughput_mbps=None,
        transactions_per_s=rate,
        # One transaction in flight at a time: its mean latency is the inverse rate.
        mean_latency_us=1e6 / rate if rate > 0 else None,
        cpu_util_pct=used.util_pct,
        softirq_pct=used.softirq_pct,
        service_demand_us_per_kb=None,
        service_demand_us_per_tr=cpu.service_demand_us(used, work),
    )
