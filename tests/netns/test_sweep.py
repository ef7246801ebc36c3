"""Sweeps for real: MTUs set on every device (read back by `ip`), refused values as rows, and small
size and MTU sweeps through ``python -m vdevperf`` with their rows, round orders and effects."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vdevperf.errors import VdevperfError
from vdevperf.topology.builder import build
from vdevperf.topology.mtu import MtuRefused, read_mtu, set_mtu
from vdevperf.topology.spec import load_topology

QUICK = ("--rounds", "2", "-l", "0.5", "--warmup", "0.3", "--json", "-q")


def vdevperf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vdevperf", *args], capture_output=True, text=True, timeout=120)


def ip_mtu(topo, device: str) -> int:
    """The device's MTU as `ip link` prints it inside its namespace: an oracle independent of pyroute2."""
    ns = topo.netns_name(topo.spec.device(device).netns)
    out = subprocess.run(
        [shutil.which("ip") or "ip", "-n", ns, "-o", "link", "show", topo.ifname(device)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r" mtu (\d+) ", out)
    assert match, out
    return int(match.group(1))


@pytest.mark.parametrize("name", ["bridge", "macvlan"])
def test_every_device_takes_the_mtu_up_and_down_parents_first(name):
    with build(load_topology(name)) as topo:
        for mtu in (9000, 65535, 1500):
            applied = set_mtu(topo, mtu)
            assert applied == {d.name: mtu for d in topo.spec.devices}
            assert {d.name: ip_mtu(topo, d.name) for d in topo.spec.devices} == applied
        assert read_mtu(topo) == applied


def test_the_underlay_of_a_tunnel_carries_the_mtu_plus_its_headers_both_ways():
    with build(load_topology("vxlan")) as topo:
        for mtu in (9000, 1500, 4000):
            applied = set_mtu(topo, mtu)
            # The overlay, where the endpoints are, has the MTU; its underlay 50 bytes more (outer headers).
            assert applied == {"u0": mtu + 50, "u1": mtu + 50, "x0": mtu, "x1": mtu}
            assert {name: ip_mtu(topo, name) for name in applied} == applied


def test_a_device_that_refuses_names_itself_and_the_reason():
    with build(load_topology("vxlan")) as topo:
        # 65535 on the overlay would need 65585 on the underlay, more than any device takes.
        with pytest.raises(MtuRefused, match=r"device 'u0' refused MTU 65585 \(MTU 65535 and the headers"):
            set_mtu(topo, 65535)


def test_a_size_sweep_runs_one_row_per_value_in_interleaved_rounds(tmp_path: Path):
    out = tmp_path / "size.json"
    proc = vdevperf("run", "veth", "-t", "TCP_STREAM", "--sweep", "size=64,16K", *QUICK, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document == json.loads(out.read_text())
    runs = document["runs"]
    assert [(r["sweep"]["label"], r["config"]["send_size"], r["config"]["recv_size"]) for r in runs] == [
        ("size=64", 64, 64),
        ("size=16K", 16384, 16384),
    ]
    assert all(r["status"] == "ok" and len(r["iterations"]) == 2 for r in runs)
    comparison = document["comparison"]
    assert comparison["baseline"] == "size=64"
    assert [sorted(order) for order in comparison["orders"]] == [
        ["veth size=16K TCP_STREAM", "veth size=64 TCP_STREAM"]
    ] * 2
    assert [sorted({it["round"] for it in r["iterations"]}) for r in runs] == [[0, 1], [0, 1]]
    # Rounds flagged as noisy (a busy shared machine) are left out of the cells; those there are 16K's.
    assert {c["arm"] for c in comparison["cells"]} <= {"veth size=16K"}
    # 64-byte sends cost a system call per 64 bytes: 16K moves several times as much, round by round.
    rates = [{it["round"]: it["metrics"]["throughput_mbps"] for it in r["iterations"]} for r in runs]
    assert all(rates[1][n] > 3 * rates[0][n] for n in (0, 1)), rates
    table = vdevperf("report", str(out))
    assert table.returncode == 0 and "each value against size=64 on the same topology" in table.stdout


def test_an_mtu_sweep_over_two_topologies_applies_each_value_and_reports_a_refused_one(tmp_path: Path):
    out = tmp_path / "mtu.json"
    args = ("compare", "veth", "vxlan", "-t", "TCP_STREAM", "--sweep", "mtu=1500,65535", "--capture")
    proc = vdevperf(*args, *QUICK, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]
    assert [(r["topology"], r["sweep"]["value"], r["status"]) for r in runs] == [
        ("veth", 1500, "ok"),
        ("veth", 65535, "ok"),
        ("vxlan", 1500, "ok"),
        ("vxlan", 65535, "unsupported"),
    ]
    for run in runs[:2]:
        mtu = run["sweep"]["value"]
        assert run["sweep"]["applied"] == {"c0": mtu, "s0": mtu}
        # The receiving device's MTU as the kernel reported it when each iteration's probe started.
        assert [it["capture"]["mtu"] for it in run["iterations"]] == [mtu, mtu]
    assert runs[2]["sweep"]["applied"] == {"u0": 1550, "u1": 1550, "x0": 1500, "x1": 1500}
    assert "refused MTU 65585 (MTU 65535 and the headers of the tunnel on it): Invalid argument" in runs[3]["reason"]
    table = vdevperf("report", str(out)).stdout
    assert "mtu=65535 unsupported here (see below)" in table
    assert re.search(r"^vxlan mtu=65535: device 'u0' refused MTU 65585", table, re.MULTILINE)


def test_the_python_api_sweeps_too(tmp_path: Path):
    import vdevperf.api
    from vdevperf.sweeps import Param, Sweep

    swept = Sweep(Param.SIZE, (64, 16384))
    results = vdevperf.api.compare(
        ["veth"], "TCP_RR", sweep=swept, rounds=1, length_s=0.3, warmup_s=0.1, output=tmp_path / "api.json"
    )
    assert results.baseline == "size=64"
    assert [(r.sweep["label"], r.config.request_size, r.config.response_size) for r in results.runs] == [
        ("size=64", 64, 64),
        ("size=16K", 16384, 16384),
    ]
    assert [r.arm for r in results.ratios] == ["veth size=16K"] * len(results.ratios)
    with pytest.raises(VdevperfError, match="baseline: cannot go with a sweep"):
        vdevperf.api.compare(["veth"], sweep=swept, baseline="veth")
