"""--engine for real on veth: each endpoint says which loops ran, the two engines agree, native counts
keep the Python loops' invariants, and a native loop stops on the signal like a Python one."""

from __future__ import annotations

import statistics
import time

import pytest

from vdevperf import bench
from vdevperf.load.context import LoopContext
from vdevperf.load.tests import TESTS, engine_of
from vdevperf.model import TestConfig, TestName
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology

SHORT = {"duration_s": 0.5, "warmup_s": 0.1, "interval_s": 0.25}
PINNED = {"client_cpu": 0, "server_cpu": 1}


@pytest.fixture(scope="module")
def veth():
    with build(load_topology("veth")) as topo:
        yield topo


def run(topo, test: TestName, engine: str, **options):
    return bench.measure(topo, TestConfig(test=test, engine=engine, **(SHORT | options)))


def engines(result) -> dict[str, str]:
    """Role -> the engine its endpoint reported (flow 0)."""
    return {e["role"]: e["engine"] for e in result.iterations[-1].endpoints if e["flow"] == 0}


def counters(result, role: str) -> dict[str, int]:
    return next(e for e in result.iterations[-1].endpoints if e["role"] == role)["final_counters"]


@pytest.mark.parametrize(
    ("test", "options", "client", "server"),
    [
        (TestName.TCP_STREAM, {}, "native", "native"),
        (TestName.TCP_MAERTS, {}, "native", "native"),
        (TestName.UDP_STREAM, {"send_size": 1472}, "native", "native"),
        (TestName.TCP_SENDFILE, {}, "native", "native"),  # sendfile(2) from C
        (TestName.TCP_STREAM, {"rate_bps": 1e9}, "native", "native"),  # -b's paced sender in C
        (TestName.TCP_MAERTS, {"rate_bps": 1e9}, "native", "native"),  # the server's paced sender
        (TestName.UDP_STREAM, {"send_size": 1472, "rate_bps": 200e6}, "native", "native"),  # stamped, paced
        (TestName.TCP_STREAM, {"zerocopy": True}, "python", "native"),  # -Z's sends stay in Python
    ],
)
def test_each_endpoint_reports_the_engine_that_ran_its_loop(veth, test, options, client, server):
    result = run(veth, test, "native", **options)
    assert result.config.engine == "native"
    assert engines(result) == {"client": client, "server": server}
    python = run(veth, test, "python", **options)
    assert python.config.engine == "python" and engines(python) == {"client": "python", "server": "python"}


def test_rr_endpoints_report_what_their_loop_family_runs_natively(veth):
    """Whatever the RR loops have natively, the report says it, and python when python is asked."""
    cfg = TestConfig(test=TestName.TCP_RR, **SHORT)
    tdef = TESTS[cfg.test]
    expected = {
        role: engine_of(loop, LoopContext(None, cfg, memoryview(b""), memoryview(b""), native=True))
        for role, loop in (("client", tdef.client_loop), ("server", tdef.server_loop))
    }
    assert engines(bench.measure(veth, cfg)) == expected
    assert set(engines(run(veth, TestName.TCP_RR, "python")).values()) == {"python"}


def _rates(veth, test: TestName, rounds: int, **options) -> dict[str, list[float]]:
    """Throughput per engine over interleaved rounds (native, python, native, python, ...)."""
    rates: dict[str, list[float]] = {"native": [], "python": []}
    for _ in range(rounds):
        for engine in rates:
            rates[engine].append(run(veth, test, engine, **(PINNED | options)).metrics.throughput_mbps)
    return rates


@pytest.mark.parametrize(
    ("test", "options"),
    [
        (TestName.TCP_STREAM, {"fq_rate_bps": 2e9}),  # a native sender, paced by the kernel
        (TestName.UDP_STREAM, {"send_size": 1472, "rate_bps": 200e6}),  # a native receiver's counts
    ],
)
def test_the_engines_agree_at_a_fixed_load(veth, test, options):
    rates = _rates(veth, test, 1, **options)
    assert rates["native"][0] == pytest.approx(rates["python"][0], rel=0.05)


def test_native_tcp_stream_keeps_up_with_python(veth):
    """Medians of interleaved rounds, so that a noisy neighbour hits both engines alike."""
    rates = _rates(veth, TestName.TCP_STREAM, 3)
    assert statistics.median(rates["native"]) >= 0.9 * statistics.median(rates["python"])


def test_native_tcp_counts_keep_the_surplus_within_one_send(veth):
    result = run(veth, TestName.TCP_STREAM, "native", send_size=65536)
    assert engines(result) == {"client": "native", "server": "native"}
    sent, received = counters(result, "client")["bytes_sent"], counters(result, "server")["bytes_received"]
    # Everything sent arrives before EOF; the stop can cut off the count of one send that had queued data.
    assert 0 <= received - sent <= result.config.send_size
    assert counters(result, "client")["messages_sent"] >= sent // result.config.send_size


def test_native_udp_loss_and_jitter_come_from_real_counts(veth):
    result = run(veth, TestName.UDP_STREAM, "native", send_size=1472)
    client, server, m = counters(result, "client"), counters(result, "server"), result.metrics
    assert client["bytes_sent"] == client["messages_sent"] * 1472
    assert server["bytes_received"] == server["messages_received"] * 1472
    assert client["messages_sent"] >= server["messages_received"] > 0
    assert m.messages_sent >= m.messages_received > 0
    assert m.loss_pct == pytest.approx(100 * (m.messages_sent - m.messages_received) / m.messages_sent)
    assert server["jitter_sum_ns"] > 0 and 0 < m.jitter_us < 10_000


@pytest.mark.parametrize(
    ("test", "options"),
    [
        (TestName.UDP_STREAM, {"send_size": 1472}),  # a sender that never blocks, a receiver that waits
        (TestName.TCP_MAERTS, {}),  # a server sender blocked on a full socket
    ],
)
def test_native_loops_stop_promptly_on_the_signal(veth, test, options):
    start = time.monotonic()
    result = run(veth, test, "native", **options)
    assert set(engines(result).values()) == {"native"}
    # A loop that missed the stop would hold the run until the endpoints' finish timeout (10 s).
    assert time.monotonic() - start < SHORT["duration_s"] + SHORT["warmup_s"] + 3
