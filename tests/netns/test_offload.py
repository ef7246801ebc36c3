"""Offload features for real on veth: set, verify with a fresh read and ethtool, restore, probe frames, sweep."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyroute2.ethtool import Ethtool

from vdevperf import bench
from vdevperf.errors import VdevperfError
from vdevperf.model import TestConfig, TestName
from vdevperf.topology import netns
from vdevperf.topology.builder import build
from vdevperf.topology.offload import OffloadRequest, group_states, parse_requests
from vdevperf.topology.spec import BUNDLED_DIR, load_topology

REPO = Path(__file__).resolve().parents[2]
SHORT = TestConfig(test=TestName.TCP_STREAM, duration_s=0.5, warmup_s=0.4, interval_s=0.25)


@pytest.fixture(scope="module")
def veth():
    with build(load_topology("veth")) as topo:
        yield topo


def fresh_groups(topo, device: str) -> dict:
    """The device's offloads read through a new ethtool socket, independent of any Offloads object."""
    with netns.entered(topo.netns_fd(topo.spec.device(device).netns)):
        tool = Ethtool()
    try:
        return {k: v.active for k, v in group_states(tool.get_features(topo.ifname(device)).features).items()}
    finally:
        tool.close()


def ethtool_k(topo, device: str) -> dict[str, str]:
    """`ethtool -k` inside the device's namespace: a second, independent oracle."""
    tool = shutil.which("ethtool")
    if tool is None:
        pytest.fail("ethtool (Debian package ethtool) is needed as the tests' independent oracle")
    path = topo.netns_path(topo.spec.device(device).netns)
    out = subprocess.run(
        [tool, "-k", topo.ifname(device)],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: netns.move_to(path),
    ).stdout
    return {k.strip(): v.split()[0] for k, _, v in (line.partition(":") for line in out.splitlines()[1:]) if v}


def test_features_set_off_are_visible_to_a_fresh_read_and_to_ethtool_then_restored(veth):
    before = fresh_groups(veth, "s0")
    assert before["tso"] and before["gso"]
    with bench.offloaded(veth, parse_requests("tso=off,gso=off,gro=off")) as offload:
        for device in ("c0", "s0"):
            now = fresh_groups(veth, device)
            assert not now["tso"] and not now["gso"] and not now["gro"]
            oracle = ethtool_k(veth, device)
            assert oracle["tcp-segmentation-offload"] == "off"
            assert oracle["generic-segmentation-offload"] == "off"
            assert oracle["generic-receive-offload"] == "off"
        assert "tx-tcp-segmentation" in offload["changed"]["s0"]
        assert offload["state"]["s0"]["tso"] == {"active": False, "fixed": False}
    assert fresh_groups(veth, "s0") == before
    assert ethtool_k(veth, "s0")["tcp-segmentation-offload"] == "on"


def test_dependent_features_are_reported_as_changed(veth):
    # Transmit checksums off takes TSO with it: the kernel's rule, reported, not hidden.
    with bench.offloaded(veth, parse_requests("c0:tx=off")) as offload:
        assert {"tx-tcp-segmentation", "tx-tcp6-segmentation"} <= set(offload["changed"]["c0"])
        assert offload["state"]["c0"]["tx"]["active"] is False
        assert offload["changed"].get("s0", []) == []


def test_features_are_restored_after_a_failed_run(veth):
    before = fresh_groups(veth, "c0")
    with pytest.raises(RuntimeError), bench.offloaded(veth, parse_requests("tso=off")):
        assert not fresh_groups(veth, "c0")["tso"]
        raise RuntimeError("the run failed")
    assert fresh_groups(veth, "c0") == before
    # A request that fails half way (lro is fixed off on veth) restores what it had already set.
    with pytest.raises(VdevperfError, match="lro is fixed off"):
        with bench.offloaded(veth, [OffloadRequest("tso", False), OffloadRequest("lro", True)]):
            pass
    assert fresh_groups(veth, "c0") == before


def test_the_probe_sees_frames_above_the_mtu_only_with_offloads_on(veth):
    on = parse_requests("tso=on,gso=on,gro=on")
    with bench.offloaded(veth, on):
        probe = bench.iterate(veth, SHORT, probe=True).capture
    assert probe["frames"] > 10 and probe["mtu"] == 1500
    assert probe["max_bytes"] > 1514 and probe["above_mtu_pct"] > 50
    with bench.offloaded(veth, parse_requests("tso=off,gso=off,gro=off")):
        probe = bench.iterate(veth, SHORT, probe=True).capture
    assert probe["frames"] > 10
    assert probe["max_bytes"] <= 1514 and probe["above_mtu_pct"] == 0
    assert 0 < probe["seconds"] <= 1.0 and probe["cpu_s"] >= 0


def vdevperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdevperf", *args], capture_output=True, text=True, timeout=180, cwd=REPO
    )


def test_a_fixed_feature_gives_one_clear_line():
    proc = vdevperf("run", "veth", "-l", "0.5", "--offload", "lro=on")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == proc.stderr.strip().splitlines()[0]
    assert "lro is fixed off by its driver" in proc.stderr and "--offload lro=on" in proc.stderr


def test_the_matrix_interleaves_combinations_and_judges_each_against_all_on(tmp_path):
    out = tmp_path / "m.json"
    proc = vdevperf(
        "run",
        "veth",
        "-t",
        "TCP_STREAM",
        "-l",
        "0.4",
        "--warmup",
        "0.3",
        "--offload-matrix",
        "tso,gro",
        "--seed",
        "5",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("tso=", "gro="))]
    assert [r.split("  ")[0] for r in rows] == ["tso=on gro=on", "tso=on gro=off", "tso=off gro=on", "tso=off gro=off"]
    assert "baseline" in rows[0] and all("x ±" in r for r in rows[1:])
    doc = json.loads(out.read_text())
    runs = doc["runs"]
    assert [r["offload"]["combination"] for r in runs] == [
        {"tso": True, "gro": True},
        {"tso": True, "gro": False},
        {"tso": False, "gro": True},
        {"tso": False, "gro": False},
    ]
    assert all([it["round"] for it in r["iterations"]] == [0, 1, 2] for r in runs)  # 3 rounds by default
    assert runs[3]["offload"]["state"]["c0"]["tso"]["active"] is False  # each round applied its combination
    comparison = doc["comparison"]
    assert comparison["baseline"] == "tso=on gro=on"
    assert {c["arm"] for c in comparison["cells"]} == {"tso=on gro=off", "tso=off gro=on", "tso=off gro=off"}
    assert comparison["orders"][0] == bench_order(5, 0)


def bench_order(seed: int, index: int) -> list[str]:
    from vdevperf import rounds

    return rounds.order(seed, index, ["tso=on gro=on", "tso=on gro=off", "tso=off gro=on", "tso=off gro=off"])


def test_a_topology_file_sets_offloads_per_device(tmp_path):
    text = (BUNDLED_DIR / "veth.toml").read_text()
    text = text.replace('name = "s0"', 'name = "s0"\noffload = { gro = true, tso = "off" }')
    path = tmp_path / "veth-gro.toml"
    path.write_text(text)
    out = tmp_path / "r.json"
    proc = vdevperf("run", str(path), "-l", "0.4", "--warmup", "0.3", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    run = json.loads(out.read_text())["runs"][0]
    assert run["offload"]["requested"] == ["s0:gro=on", "s0:tso=off"]
    assert run["offload"]["state"]["s0"]["gro"]["active"] is True
    assert run["offload"]["state"]["s0"]["tso"]["active"] is False
    assert run["offload"]["state"]["c0"]["tso"]["active"] is True
