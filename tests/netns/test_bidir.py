"""--bidir for real on veth: both directions move data at once over their own connections, each
direction's figure is its flows' counted bytes, and what cannot run both ways is refused up front."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vdevperf import bench
from vdevperf.model import TestConfig, TestName
from vdevperf.topology import netns
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology
from vdevperf.traits import TRAITS

REPO = Path(__file__).resolve().parents[2]
SHORT = {"duration_s": 0.5, "warmup_s": 0.2, "interval_s": 0.25}


@pytest.fixture(scope="module")
def veth():
    with build(load_topology("veth")) as topo:
        yield topo


def _window_bytes(it, flow: int, role: str) -> int:
    """How many bytes ``role`` of ``flow`` received between the window's first and last sample."""
    names, samples = it.raw["counter_names"], it.raw["samples"]
    at = names.index(f"flow{flow}.{role}.bytes_received")
    return samples[-1]["counters"][at] - samples[0]["counters"][at]


@pytest.mark.parametrize("test", [TestName.TCP_STREAM, TestName.TCP_MAERTS])
def test_bidir_moves_data_both_ways_at_once_and_figures_each_direction(veth, test):
    records: list[dict] = []
    result = bench.measure(veth, TestConfig(test=test, flows=4, bidir=True, **SHORT), interval=records.append)
    it, m = result.iterations[-1], result.metrics
    assert result.config.flows == 4 and len(m.flows) == 4
    assert sorted({(e["flow"], e["role"]) for e in it.endpoints}) == [
        (f, r) for f in range(4) for r in ("client", "server")
    ]
    forward_at = TRAITS[test].work.role  # where the test's own flows arrive
    reverse_at = "server" if forward_at == "client" else "client"
    final = {(e["flow"], e["role"]): e["final_counters"] for e in it.endpoints}
    for flow, (receiver, sender) in enumerate([(forward_at, reverse_at)] * 2 + [(reverse_at, forward_at)] * 2):
        # Data went one way on each connection: the receiver got what its sender sent, never the reverse.
        assert final[(flow, receiver)]["bytes_received"] > 1024**2, (flow, final)
        assert final[(flow, sender)]["bytes_received"] == 0 and final[(flow, receiver)]["bytes_sent"] == 0
        surplus = final[(flow, receiver)]["bytes_received"] - final[(flow, sender)]["bytes_sent"]
        assert 0 <= surplus <= result.config.send_size
    # Each direction's figure is its own flows' bytes over the window, and they sum to the total.
    seconds = it.metrics.elapsed_s
    forward = sum(_window_bytes(it, f, forward_at) for f in (0, 1)) * 8 / seconds / 1e6
    reverse = sum(_window_bytes(it, f, reverse_at) for f in (2, 3)) * 8 / seconds / 1e6
    assert m.forward_mbps == pytest.approx(forward) and m.reverse_mbps == pytest.approx(reverse)
    assert m.forward_mbps > 10 and m.reverse_mbps > 10
    assert m.forward_mbps + m.reverse_mbps == pytest.approx(m.throughput_mbps)
    assert [f.rate for f in m.flows] == pytest.approx(
        [_window_bytes(it, f, forward_at if f < 2 else reverse_at) * 8 / seconds / 1e6 for f in range(4)]
    )
    # Live output (--json-stream) and the stored series count every flow at its own receiver too.
    assert records and all(len(r["flow_rates"]) == 4 and min(r["flow_rates"]) > 0 for r in records)
    assert sum(s["rate"] * s["dt_s"] for s in it.series) / seconds == pytest.approx(m.throughput_mbps)


def _vdevperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdevperf", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_the_cli_runs_p_flows_each_way_and_shows_both_directions(tmp_path):
    out = tmp_path / "r.json"
    proc = _vdevperf(
        "run", "veth", "-t", "TCP_STREAM", "--bidir", "-P", "2", "-l", "0.5", "--warmup", "0.2", "-o", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0].split()
    assert header[header.index("Result") + 1 : header.index("Result") + 3] == ["Forward", "Reverse"]
    run = json.loads(out.read_text())["runs"][0]
    assert run["config"]["bidir"] is True and run["config"]["flows"] == 4
    assert run["metrics"]["forward_mbps"] > 0 and run["metrics"]["reverse_mbps"] > 0


@pytest.mark.parametrize(
    "argv, line",
    [
        (["-t", "TCP_RR"], "vdevperf: --bidir: runs TCP_STREAM, TCP_MAERTS both ways, not TCP_RR (a request/"),
        (["-t", "TCP_CRR"], "not TCP_CRR (a request/response test already goes both ways)"),
        (["-t", "UDP_RR"], "not UDP_RR (a request/response test already goes both ways)"),
        (["-t", "UDP_STREAM"], "vdevperf: --bidir: runs TCP_STREAM, TCP_MAERTS both ways, not UDP_STREAM"),
        (["-t", "TCP_SENDFILE"], "not TCP_SENDFILE"),
        (["-P", "129"], "vdevperf: --bidir: -P 129 per direction makes 258 flows; at most 128 per direction"),
    ],
)
def test_what_cannot_run_both_ways_is_one_line_exit_2_and_builds_nothing(argv, line):
    before = set(netns.list_ours())
    proc = _vdevperf("run", "veth", "-l", "0.5", "--bidir", *argv)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and line in lines[0], proc.stderr
    assert set(netns.list_ours()) == before
