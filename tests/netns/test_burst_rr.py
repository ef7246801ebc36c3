"""--burst for real on veth: several transactions in flight move more per second than one, each waits
longer (queueing), and the histogram still holds one entry per counted transaction."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vdevperf import bench
from vdevperf.model import TestConfig, TestName
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology

REPO = Path(__file__).resolve().parents[2]
SHORT = {"duration_s": 0.8, "warmup_s": 0.2, "interval_s": 0.4}
# Client and server on different CPUs, or on the same one.
APART = {"client_cpu": 0, "server_cpu": 1}
TOGETHER = {"client_cpu": 0, "server_cpu": 0}


@pytest.fixture(scope="module")
def veth():
    with build(load_topology("veth")) as topo:
        yield topo


def _window_delta(result, name: str) -> int:
    raw = result.iterations[-1].raw
    index = raw["counter_names"].index(name)
    return raw["samples"][-1]["counters"][index] - raw["samples"][0]["counters"][index]


def _checked(topo, cfg: TestConfig):
    """One measured run, with its histogram checked against its transaction counter (test_load's 1 % rule)."""
    result = bench.measure(topo, cfg)
    counted = _window_delta(result, "flow0.client.transactions")
    in_histogram = sum(sum(h.values()) for h in result.iterations[0].raw["latency_histograms"])
    assert abs(in_histogram - counted) <= 2 + counted // 100
    return result


def _pair(topo, test: TestName, cpus: dict[str, int]):
    """burst 1 then burst 8 on the same path and CPUs (TCP with -D, as netperf's burst mode advises).

    Both obey Little's law: with N always in flight, mean latency x rate = N. That checks the pairing
    of each response with its request's send time: a ring off by one slot would break it."""
    tcp = {"nodelay": True} if test is TestName.TCP_RR else {}
    runs = [_checked(topo, TestConfig(test=test, burst=n, **tcp, **cpus, **SHORT)) for n in (1, 8)]
    for n, run in zip((1, 8), runs, strict=True):
        in_flight = run.metrics.mean_latency_us * 1e-6 * run.metrics.transactions_per_s
        # A stall of an end across the window's edge puts a whole long transaction in the window:
        # a round or two of it, so the margin is wider at 1 in flight than at 8 (where a ring off by
        # one slot would give 7 or 9).
        assert in_flight == pytest.approx(n, rel=0.1 if n > 1 else 0.2)
        if test is TestName.TCP_RR:
            assert _window_delta(run, "flow0.client.errors") == 0
    assert runs[1].config.burst == 8
    return runs[0].metrics, runs[1].metrics


@pytest.mark.parametrize("test", [TestName.TCP_RR, TestName.UDP_RR])
def test_eight_in_flight_fill_the_idle_gaps_of_two_cpus(veth, test):
    """One at a time, each end idles while the other works, and every wake-up from idle costs tens of
    µs in this VM; with 8 in flight neither end idles: ~10x the transactions here (1.3x asked)."""
    one, eight = _pair(veth, test, APART)
    assert eight.transactions_per_s > 1.3 * one.transactions_per_s


@pytest.mark.parametrize("test", [TestName.TCP_RR, TestName.UDP_RR])
def test_eight_in_flight_queue_behind_each_other_on_one_cpu(veth, test):
    """On one CPU the round trip keeps it busy already, so 8 in flight add few transactions (~1.1x)
    and each waits behind the others: by Little's law ~7x the latency (2x asked)."""
    one, eight = _pair(veth, test, TOGETHER)
    assert eight.mean_latency_us > 2 * one.mean_latency_us
    assert eight.p50_latency_us > 2 * one.p50_latency_us


@pytest.mark.parametrize("test", ["TCP_CRR", "TCP_STREAM", "UDP_STREAM"])
def test_the_cli_refuses_a_burst_where_it_cannot_apply(test):
    done = subprocess.run(
        [sys.executable, "-m", "vdevperf", "run", "veth", "-t", test, "--burst", "4", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == f"vdevperf: --burst: transactions in flight are for TCP_RR, UDP_RR, not {test}\n"
    assert done.stdout == ""
