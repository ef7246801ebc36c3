"""TCP_INFO per flow for real, on the veth topology: readings at both edges and every interval that agree
with what the loops counted, retransmits equal to the senders' total_retrans growth, two flows read apart,
none for TCP_CRR, only the client ends against a vdevperf server, and no socket kept open past the window."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vdevperf import bench
from vdevperf.counters import SLOTS, counter_names
from vdevperf.model import Iteration, TestConfig, TestName
from vdevperf.remote.client import RemoteTarget
from vdevperf.topology import netns
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology

WINDOW = {"duration_s": 1.0, "warmup_s": 0.2, "interval_s": 0.25}
SERVER_IP = "198.18.0.2"
TOKEN = b"tcp-info-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def veth():
    with build(load_topology("veth")) as topo:
        yield topo


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def measured(topo, test: TestName, **overrides) -> Iteration:
    """One window of ``test``; it must end promptly (a socket held open past the window would keep a
    peer from EOF until the endpoints' finish timeout) and leave no descriptor of this process open."""
    cfg = TestConfig(test=test, **(WINDOW | overrides))
    before = _open_fds()
    started = time.monotonic()
    it = bench.iterate(topo, cfg)
    assert time.monotonic() - started < cfg.duration_s + cfg.warmup_s + 3.0
    assert _open_fds() <= before
    return it


def _counter(raw: dict, sample: int, flow: int, role: str, slot: str) -> int:
    names = raw["counter_names"]
    return raw["samples"][sample]["counters"][names.index(f"flow{flow}.{role}.{slot}")]


def _check_readings(raw: dict, flows: int) -> None:
    """Every read end has a reading at each sample, the first and last marked as the window's edges."""
    times = [s["t_s"] for s in raw["samples"]]
    assert len(times) >= 5  # start, three intervals, end
    assert len(raw["tcp_info"]) == flows
    for per_flow in raw["tcp_info"]:
        for role in ("client", "server"):
            readings = per_flow[role]
            assert [r["t_s"] for r in readings] == times
            assert [r["edge"] for r in readings] == ["start", *[None] * (len(times) - 2), "end"]
            for r in readings:
                assert None not in [v for k, v in r.items() if k != "edge"]  # this kernel has every field
                assert r["rtt_us"] > 0 and r["snd_cwnd"] > 0 and r["snd_mss"] > 0
                assert r["retransmits"] == 0  # no timeout pending on a veth
            totals = [r["total_retrans"] for r in readings]
            assert totals == sorted(totals)  # a running total


def _grown(readings: list[dict], key: str) -> int:
    return readings[-1][key] - readings[0][key]


def test_tcp_stream_readings_agree_with_the_counted_bytes_and_give_the_retransmits(veth):
    it = measured(veth, TestName.TCP_STREAM)
    raw, m = it.raw, it.metrics
    _check_readings(raw, 1)
    client, server = raw["tcp_info"][0]["client"], raw["tcp_info"][0]["server"]
    # What the receiving loop counted in the window, the sender's TCP saw acknowledged and the receiver's
    # TCP received (each read right after the counters, so within a fraction of a percent).
    counted = _counter(raw, -1, 0, "server", "bytes_received") - _counter(raw, 0, 0, "server", "bytes_received")
    assert _grown(client, "bytes_acked") == pytest.approx(counted, rel=0.05)
    assert _grown(server, "bytes_received") == pytest.approx(counted, rel=0.05)
    assert _grown(client, "bytes_sent") >= _grown(client, "bytes_acked") - 4 * 1024**2  # less what is in flight
    # The sender's delivery-rate estimate is of the rate the window measured: a reading is one ACK's sample
    # (here 0.8-1.6 times the window's rate, with one in five or so up to 5 times or far below), so their median.
    delivery_mbps = statistics.median(r["delivery_rate_bytes_per_s"] for r in client) * 8 / 1e6
    assert m.throughput_mbps / 3 < delivery_mbps < m.throughput_mbps * 3
    assert all(r["pacing_rate_bytes_per_s"] > 0 for r in client)
    assert m.retransmits == _grown(client, "total_retrans") >= 0
    assert _grown(client, "bytes_retrans") >= 0
    assert _grown(server, "bytes_sent") == 0  # the receiver sends no data


def test_tcp_rr_reads_both_ends_whose_bytes_are_its_transactions(veth):
    it = measured(veth, TestName.TCP_RR)
    raw, m = it.raw, it.metrics
    _check_readings(raw, 1)
    client, server = raw["tcp_info"][0]["client"], raw["tcp_info"][0]["server"]
    done = _counter(raw, -1, 0, "client", "transactions") - _counter(raw, 0, 0, "client", "transactions")
    # One 1-byte request and one 1-byte response per transaction; more may complete between the counters'
    # read and TCP_INFO's, at either edge (on a loaded machine the sampler can be preempted in between).
    for role_readings in (client, server):
        assert _grown(role_readings, "bytes_acked") == pytest.approx(done, rel=0.05, abs=50)
    assert all(r["delivery_rate_app_limited"] for r in client[1:])  # one byte at a time: the app limits it
    # An RR round trip on a veth is tens of µs: the smoothed RTT is in that range, not ms.
    assert statistics.median(r["rtt_us"] for r in client) < 5_000
    assert m.retransmits == _grown(client, "total_retrans") + _grown(server, "total_retrans") >= 0


def test_two_flows_are_read_apart(veth):
    it = measured(veth, TestName.TCP_STREAM, flows=2)
    raw, m = it.raw, it.metrics
    _check_readings(raw, 2)
    acked = []
    for flow in range(2):
        client = raw["tcp_info"][flow]["client"]
        counted = _counter(raw, -1, flow, "server", "bytes_received") - _counter(
            raw, 0, flow, "server", "bytes_received"
        )
        acked.append(_grown(client, "bytes_acked"))
        assert acked[-1] == pytest.approx(counted, rel=0.05)  # each flow's own connection
    assert acked[0] != acked[1]
    assert m.retransmits == sum(_grown(raw["tcp_info"][f]["client"], "total_retrans") for f in range(2))


def test_maerts_counts_the_servers_retransmits(veth):
    it = measured(veth, TestName.TCP_MAERTS)
    raw = it.raw
    server = raw["tcp_info"][0]["server"]
    counted = _counter(raw, -1, 0, "client", "bytes_received") - _counter(raw, 0, 0, "client", "bytes_received")
    assert _grown(server, "bytes_acked") == pytest.approx(counted, rel=0.05)
    assert it.metrics.retransmits == _grown(server, "total_retrans")


def test_tcp_crr_has_no_readings(veth):
    it = measured(veth, TestName.TCP_CRR)
    assert "tcp_info" not in it.raw
    assert it.metrics.retransmits is None and it.metrics.transactions_per_s is not None


def test_against_a_vdevperf_server_only_the_client_ends_are_read(veth, tmp_path):
    token = tmp_path / "token"
    token.write_bytes(TOKEN + b"\n")
    token.chmod(0o600)
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vdevperf", "server", "--port", "0", "--token-file", str(token)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
            preexec_fn=lambda: netns.move_to(veth.server.netns_path),
            cwd=Path(__file__).resolve().parents[2],
        )
    try:
        deadline = time.monotonic() + 15
        while "listening on " not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        port = int(log.read_text().split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        target = RemoteTarget(SERVER_IP, port, TOKEN, netns_path=veth.client.netns_path)
        for test, sender_is_client in ((TestName.TCP_STREAM, True), (TestName.TCP_MAERTS, False)):
            result = bench.measure_remote(target, TestConfig(test=test, **WINDOW))
            raw = result.iterations[0].raw
            (flow,) = raw["tcp_info"]
            assert flow["server"] is None  # on the other host
            assert len(flow["client"]) == len(raw["samples"]) and flow["client"][0]["rtt_us"] > 0
            if sender_is_client:
                assert result.metrics.retransmits == _grown(flow["client"], "total_retrans")
            else:
                assert result.metrics.retransmits is None  # the sender's end was not read
            assert len(raw["counter_names"]) == len(counter_names(1)) == 2 * len(SLOTS)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "Traceback" not in log.read_text()
