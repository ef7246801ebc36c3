"""The native (C) RR loops for real on veth: TCP_RR, UDP_RR, --burst 8, --rate and TCP_CRR give test_load's and
test_burst_rr's invariants (histogram vs counters within 1 %, Little's law, ordered percentiles, the
server's counts matching the client's), so the C loops keep the Python loops' accounting end to end."""

from __future__ import annotations

import pytest

from vdevperf import bench
from vdevperf.load import rr
from vdevperf.model import TestConfig, TestName
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology

pytestmark = pytest.mark.skipif(rr._RR is None, reason="vdevperf.load._native_rr not built")

SHORT = {"duration_s": 0.8, "warmup_s": 0.2, "interval_s": 0.4, "engine": "native"}


@pytest.fixture(scope="module")
def veth():
    with build(load_topology("veth")) as topo:
        yield topo


def _window_delta(result, name: str) -> int:
    raw = result.iterations[-1].raw
    index = raw["counter_names"].index(name)
    return raw["samples"][-1]["counters"][index] - raw["samples"][0]["counters"][index]


def _final(result, role: str) -> dict[str, int]:
    return next(e for e in result.iterations[-1].endpoints if e["role"] == role)["final_counters"]


def _checked(topo, cfg: TestConfig):
    """One measured run: plausible figures, and one histogram entry per counted transaction (within 1 %)."""
    result = bench.measure(topo, cfg)
    # The C loops ran: every endpoint says so, TCP_CRR's client (its own connect() per transaction) too.
    for end in result.iterations[-1].endpoints:
        assert end["engine"] == "native", end
    m = result.metrics
    assert m.transactions_per_s > 100 and m.service_demand_us_per_tr > 0
    assert (
        m.min_latency_us
        <= m.p50_latency_us
        <= m.p90_latency_us
        <= m.p99_latency_us
        <= m.p99_9_latency_us
        <= m.max_latency_us
    )
    counted = _window_delta(result, "flow0.client.transactions")
    in_histogram = sum(sum(h.values()) for h in result.iterations[0].raw["latency_histograms"])
    assert abs(in_histogram - counted) <= 2 + counted // 100
    return result


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("test", [TestName.TCP_RR, TestName.UDP_RR, TestName.TCP_CRR])
def test_native_loops_count_as_the_python_ones(veth, test, version):
    result = _checked(veth, TestConfig(test=test, ip_version=version, **SHORT))
    client, server = _final(result, "client"), _final(result, "server")
    done = client["transactions"]
    assert client["bytes_sent"] == done * result.config.request_size
    assert client["bytes_received"] == done * result.config.response_size
    if test is not TestName.UDP_RR:  # UDP: a lost request is answered never, a lost response once
        assert done <= server["transactions"] <= done + 1
        assert _window_delta(result, "flow0.client.errors") == 0
    if test is TestName.TCP_CRR:
        assert server["connections"] >= server["transactions"]
    if test is TestName.UDP_RR:
        assert result.metrics.transactions_per_s > 100 and _window_delta(result, "flow0.client.jitter_sum_ns") > 0


@pytest.mark.parametrize("test", [TestName.TCP_RR, TestName.UDP_RR])
def test_native_burst_of_eight_obeys_littles_law(veth, test):
    """With N always in flight, mean latency x rate = N: the C ring pairs each response with its request."""
    tcp = {"nodelay": True} if test is TestName.TCP_RR else {}
    for n in (1, 8):
        run = _checked(veth, TestConfig(test=test, burst=n, client_cpu=0, server_cpu=1, **tcp, **SHORT))
        in_flight = run.metrics.mean_latency_us * 1e-6 * run.metrics.transactions_per_s
        assert in_flight == pytest.approx(n, rel=0.1 if n > 1 else 0.2)
        if test is TestName.TCP_RR:
            assert _window_delta(run, "flow0.client.errors") == 0


def test_native_paced_rate_is_kept(veth):
    """--rate: the C loop's schedule gives the asked rate, each transaction timed from its due time."""
    run = _checked(veth, TestConfig(test=TestName.TCP_RR, rate_tps=5000, client_cpu=0, server_cpu=1, **SHORT))
    assert run.metrics.transactions_per_s == pytest.approx(5000, rel=0.05)
