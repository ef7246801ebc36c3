"""CPU accounting and metric derivation on hand-made samples (no root needed)."""

import os
import time

import pytest

from vdevperf.counters import BYTES_RECEIVED, TRANSACTIONS, counter_names, slot_index
from vdevperf.measure import cpu
from vdevperf.measure.metrics import derive
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import TestName


def _snap(*per_cpu):
    """Per-CPU snapshots from dicts of the non-zero fields."""
    return [[float(d.get(name, 0.0)) for name in cpu.FIELDS] for d in per_cpu]


START = _snap({"user": 10, "idle": 100, "softirq": 1}, {"system": 5, "idle": 200})
# Over the window: CPU0 1 s user + 0.5 s softirq + 0.5 s idle; CPU1 0.5 s system + 1.5 s idle.
END = _snap({"user": 11, "idle": 100.5, "softirq": 1.5}, {"system": 5.5, "idle": 201.5})


def test_delta_follows_netperf_definitions():
    used = cpu.delta(START, END, 2.0)
    assert used.total_s == pytest.approx(4.0)
    assert used.busy_s == pytest.approx(2.0)
    assert used.util_pct == pytest.approx(50.0)
    assert used.softirq_pct == pytest.approx(12.5)


def test_iowait_counts_as_busy():
    used = cpu.delta(_snap({"idle": 0}), _snap({"idle": 1, "iowait": 1}), 2.0)
    assert used.util_pct == pytest.approx(50.0)


STREAM_WORK = slot_index(0, "server", BYTES_RECEIVED)
RR_WORK = slot_index(0, "client", TRANSACTIONS)


def test_service_demand_per_kb_and_per_transaction():
    names = counter_names(1)
    first = [0] * len(names)
    last = list(first)
    last[STREAM_WORK] = 1024 * 1000  # 1000 KB received by the server
    m = derive(TestName.TCP_STREAM, 1, RawRun([Sample(0.0, START, first), Sample(2.0, END, last)], [], []))
    assert m.throughput_mbps == pytest.approx(1024 * 1000 * 8 / 2.0 / 1e6)
    # 2 busy CPU-seconds over 1000 KB: 2000 µs/KB.
    assert m.service_demand_us_per_kb == pytest.approx(2000.0)
    assert m.transactions_per_s is None and m.service_demand_us_per_tr is None

    last = list(first)
    last[RR_WORK] = 4000
    m = derive(TestName.TCP_RR, 1, RawRun([Sample(0.0, START, first), Sample(2.0, END, last)], [], []))
    assert m.transactions_per_s == pytest.approx(2000.0)
    assert m.service_demand_us_per_tr == pytest.approx(500.0)
    assert m.throughput_mbps is None and m.service_demand_us_per_kb is None


def test_no_work_gives_no_service_demand():
    zeros = [0] * len(counter_names(1))
    m = derive(TestName.TCP_STREAM, 1, RawRun([Sample(0.0, START, zeros), Sample(1.0, END, zeros)], [], []))
    assert m.throughput_mbps == 0.0
    assert m.service_demand_us_per_kb is None


def test_snapshot_has_every_field_for_every_cpu():
    snap = cpu.snapshot()
    assert len(snap) >= 1 and all(len(per_cpu) == len(cpu.FIELDS) for per_cpu in snap)


def test_ticks_the_fields_missed_count_as_busy_and_show_as_unaccounted():
    # 2 s on one CPU: 1 s idle (exact, nohz clock) but only 0.8 s of ticks landed in user.
    used = cpu.delta(_snap({"idle": 0}), _snap({"idle": 1.0, "user": 0.8}), 2.0)
    assert used.util_pct == pytest.approx(50.0)
    assert used.unaccounted_pct == pytest.approx(10.0)


def test_steal_is_not_the_guests_work():
    # 2 s on one CPU: 0.5 s idle, 0.5 s stolen by the host, 1 s of ticks in system.
    used = cpu.delta(_snap({"idle": 0}), _snap({"idle": 0.5, "steal": 0.5, "system": 1.0}), 2.0)
    assert used.busy_s == pytest.approx(1.0)
    assert used.util_pct == pytest.approx(50.0)
    assert used.steal_pct == pytest.approx(25.0)
    assert used.unaccounted_pct == pytest.approx(0.0)
    assert cpu.service_demand_us(used, 1000) == pytest.approx(1000.0)  # 1 s over 1000 units, steal left out


def test_breakdown_shares_sum_to_100_and_busy_ones_to_utilisation():
    parts = cpu.breakdown(START, END, 2.0)
    for shares in [parts["machine"], *parts["per_cpu"]]:
        assert sum(shares.values()) == pytest.approx(100.0)
    busy = sum(v for k, v in parts["machine"].items() if k not in ("idle_pct", "steal_pct"))
    assert busy == pytest.approx(cpu.delta(START, END, 2.0).util_pct)
    assert parts["machine"]["softirq_pct"] == pytest.approx(12.5)
    assert parts["per_cpu"][0]["user_pct"] == pytest.approx(50.0)


def _proc_stat() -> list[list[float]]:
    """Per-CPU times read straight from /proc/stat, in seconds, FIELDS order."""
    hz = os.sysconf("SC_CLK_TCK")
    rows = []
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                rows.append([int(v) / hz for v in values[: len(cpu.FIELDS)]])
    return rows


def test_machine_figures_match_proc_stat_read_independently():
    deadline = time.monotonic() + 0.3
    a_ours, a_raw, t0 = cpu.snapshot(), _proc_stat(), time.monotonic()
    while time.monotonic() < deadline:
        pass  # keep one CPU busy
    b_ours, b_raw, t1 = cpu.snapshot(), _proc_stat(), time.monotonic()
    ours, theirs = cpu.delta(a_ours, b_ours, t1 - t0), cpu.delta(a_raw, b_raw, t1 - t0)
    assert ours.util_pct == pytest.approx(theirs.util_pct, abs=2.0)
    assert ours.idle_s == pytest.approx(theirs.idle_s, abs=0.03)
