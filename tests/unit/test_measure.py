"""CPU accounting and metric derivation on hand-made samples (no root needed)."""

import pytest

from vdevperf.load.context import BYTES_RECEIVED, TRANSACTIONS, counter_names, slot_index
from vdevperf.measure import cpu
from vdevperf.measure.metrics import derive
from vdevperf.measure.sample import Sample
from vdevperf.model import TestName


def _snap(*per_cpu):
    """Per-CPU snapshots from dicts of the non-zero fields."""
    return [[float(d.get(name, 0.0)) for name in cpu.FIELDS] for d in per_cpu]


START = _snap({"user": 10, "idle": 100, "softirq": 1}, {"system": 5, "idle": 200})
# Over the window: CPU0 1 s user + 0.5 s softirq + 0.5 s idle; CPU1 0.5 s system + 1.5 s idle.
END = _snap({"user": 11, "idle": 100.5, "softirq": 1.5}, {"system": 5.5, "idle": 201.5})


def test_delta_follows_netperf_definitions():
    used = cpu.delta(START, END)
    assert used.total_s == pytest.approx(4.0)
    assert used.busy_s == pytest.approx(2.0)
    assert used.util_pct == pytest.approx(50.0)
    assert used.softirq_pct == pytest.approx(12.5)


def test_iowait_counts_as_busy():
    used = cpu.delta(_snap({"idle": 0}), _snap({"idle": 1, "iowait": 1}))
    assert used.util_pct == pytest.approx(50.0)


STREAM_WORK = slot_index(0, "server", BYTES_RECEIVED)
RR_WORK = slot_index(0, "client", TRANSACTIONS)


def test_service_demand_per_kb_and_per_transaction():
    names = counter_names(1)
    first = [0] * len(names)
    last = list(first)
    last[STREAM_WORK] = 1024 * 1000  # 1000 KB received by the server
    m = derive(TestName.TCP_STREAM, 1, Sample(0.0, START, first), Sample(2.0, END, last), [])
    assert m.throughput_mbps == pytest.approx(1024 * 1000 * 8 / 2.0 / 1e6)
    # 2 busy CPU-seconds over 1000 KB: 2000 µs/KB.
    assert m.service_demand_us_per_kb == pytest.approx(2000.0)
    assert m.transactions_per_s is None and m.service_demand_us_per_tr is None

    last = list(first)
    last[RR_WORK] = 4000
    m = derive(TestName.TCP_RR, 1, Sample(0.0, START, first), Sample(2.0, END, last), [])
    assert m.transactions_per_s == pytest.approx(2000.0)
    assert m.service_demand_us_per_tr == pytest.approx(500.0)
    assert m.throughput_mbps is None and m.service_demand_us_per_kb is None


def test_no_work_gives_no_service_demand():
    zeros = [0] * len(counter_names(1))
    m = derive(TestName.TCP_STREAM, 1, Sample(0.0, START, zeros), Sample(1.0, END, zeros), [])
    assert m.throughput_mbps == 0.0
    assert m.service_demand_us_per_kb is None


def test_snapshot_has_every_field_for_every_cpu():
    snap = cpu.snapshot()
    assert len(snap) >= 1 and all(len(per_cpu) == len(cpu.FIELDS) for per_cpu in snap)
