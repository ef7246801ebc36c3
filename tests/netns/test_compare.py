"""compare in interleaved rounds, for real: seeded orders, paired ratios and verdicts, the A/A
self-check, steal gating through the real runner, and noise flags from a concurrent run."""

from __future__ import annotations

import json
import math
import time

import jsonschema
import pytest
from test_cli_run import SCHEMA, runs_of, start, vdevperf

from vdevperf import cli, rounds
from vdevperf.load import runner
from vdevperf.measure import cpu
from vdevperf.measure.metrics import figure
from vdevperf.measure.noise import distorted
from vdevperf.measure.paired import NO_DIFFERENCE, UNTESTED
from vdevperf.model import TestName

# A round left noisy after its retries is left out, so on a busy machine a cell may hold one round.
VERDICT_WORDS = (NO_DIFFERENCE, "faster", "slower", "cheaper", "costlier", UNTESTED)
SHORT = ["-l", "0.5", "--warmup", "0.2"]


def test_compare_runs_seeded_interleaved_rounds_and_judges_paired_ratios(tmp_path):
    out = tmp_path / "c.json"
    proc = vdevperf(
        "compare", "veth", "bridge", "-t", "TCP_STREAM,TCP_RR", *SHORT, "--rounds", "3", "--seed", "42", "-o", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert "3 interleaved round(s) of 0.5 s (seed 42" in header and "-T 0,1 (compare's default)" in header
    assert "Holm" in header
    rows = {tuple(line.split()[:2]): line for line in proc.stdout.splitlines() if line.startswith(("veth", "bridge"))}
    assert "baseline" in rows[("veth", "TCP_RR")]
    assert all(any(word in rows[("bridge", t)] for word in VERDICT_WORDS) for t in ("TCP_STREAM", "TCP_RR"))

    again = vdevperf("report", str(out))  # the stored file shows the same table, verdicts and all
    assert again.returncode == 0 and proc.stdout.startswith(again.stdout.rstrip("\n")), again.stdout

    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    comparison = doc["comparison"]
    labels = [f"{topo} {test}" for topo in ("veth", "bridge") for test in ("TCP_STREAM", "TCP_RR")]
    assert comparison["orders"] == [rounds.order(42, r, labels) for r in range(3)]  # reproduced from the seed
    assert comparison["placement"] == {"client_cpu": 0, "server_cpu": 1, "label": "-T 0,1 (compare's default)"}
    for run in doc["runs"]:
        assert [it["round"] for it in run["iterations"]] == [0, 1, 2]
        for it in run["iterations"]:
            assert {ep["placement"]["requested_cpu"] for ep in it["endpoints"]} == {0, 1}
            assert all(ep["placement"]["migrations"] == 0 for ep in it["endpoints"])  # pinned: never moved
            assert it["noise"]["steal_pct"] is not None and "migrated" not in it["noise"]["flags"]
    # 2 tests x (rate, CPU, service demand) + TCP_RR's p99, each recomputable from the stored iterations.
    assert sorted((c["test"], c["metric"]) for c in comparison["cells"]) == sorted(
        [(t, m) for t in ("TCP_STREAM", "TCP_RR") for m in ("rate", "cpu_util_pct", "service_demand")]
        + [("TCP_RR", "p99_latency_us")]
    )
    by_topology = {(r["topology"], r["test"]): r for r in doc["runs"]}
    for cell in comparison["cells"]:
        ours, base = by_topology[("bridge", cell["test"])], by_topology[("veth", cell["test"])]
        test = TestName(cell["test"])
        flagged = {it["round"] for r in (ours, base) for it in r["iterations"] if distorted(it["noise"]["flags"])}
        assert cell["rounds"] == [r for r in range(3) if r not in flagged]
        mine = [figure(test, cell["metric"], _metrics(ours["iterations"][r])) for r in cell["rounds"]]
        theirs = [figure(test, cell["metric"], _metrics(base["iterations"][r])) for r in cell["rounds"]]
        assert cell["ratios"] == pytest.approx([a / b for a, b in zip(mine, theirs, strict=True)])
        assert cell["geomean"] == pytest.approx(math.exp(sum(map(math.log, cell["ratios"])) / len(cell["rounds"])))
        assert cell["verdict"] in VERDICT_WORDS
        if cell["low"] is not None:
            assert cell["low"] <= cell["geomean"] <= cell["high"]


def _metrics(it: dict):
    from vdevperf.results import _metrics_from_json

    return _metrics_from_json(it["metrics"])


def test_compare_takes_rounds_not_iterations():
    proc = vdevperf("compare", "veth", "-i", "5,3")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "vdevperf: -i/-I: compare repeats in interleaved rounds: use --rounds N or --target-ci W"
    )


def test_the_aa_self_check_compares_a_path_with_its_copy_and_prints_the_noise_floor(tmp_path):
    proc = vdevperf(
        "compare", "--aa", "veth", "-t", "TCP_RR", *SHORT, "--rounds", "3", "-T", "0,0", "-o", str(tmp_path / "aa.json")
    )
    assert proc.returncode == 0, proc.stderr
    assert "placement -T 0,0;" in proc.stdout
    copy = next(line for line in proc.stdout.splitlines() if line.startswith("veth-copy"))
    assert "TCP_RR" in copy
    floor = proc.stdout[proc.stdout.index("noise floor (3 rounds") :]
    assert "TCP_RR      service demand" in floor and "A/A" in floor
    doc = json.loads((tmp_path / "aa.json").read_text())
    assert {r["topology"] for r in doc["runs"]} == {"veth", "veth-copy"}
    assert doc["comparison"]["baseline"] == "veth"


def test_a_stolen_window_is_measured_again_through_the_real_runner(tmp_path, monkeypatch, capsys):
    """The first window's CPU-times reader reports 10 % of the elapsed time stolen (taken from idle)."""
    real_snapshot, real_run = cpu.snapshot, runner.run
    state = {"calls": 0, "stealing": False, "t0": time.monotonic()}

    def snapshot() -> cpu.CpuSnapshot:
        snap = real_snapshot()
        if state["stealing"]:
            taken = 0.1 * (time.monotonic() - state["t0"])
            for times in snap:
                times[cpu.FIELDS.index("steal")] += taken
                times[cpu.FIELDS.index("idle")] -= taken
        return snap

    def run(*args, **kwargs):
        state["stealing"], state["t0"] = state["calls"] == 0, time.monotonic()
        state["calls"] += 1
        return real_run(*args, **kwargs)

    monkeypatch.setattr(cpu, "snapshot", snapshot)
    monkeypatch.setattr(runner, "run", run)
    out = tmp_path / "r.json"
    assert cli.main(["run", "veth", "-t", "TCP_RR", *SHORT, "--max-steal", "5", "-o", str(out)]) == 0
    it = json.loads(out.read_text())["runs"][0]["iterations"][0]
    # The stolen first window was measured again (and, on a busy machine, perhaps a window with other
    # processes' CPU too); every attempt but the kept one is in the record.
    assert state["calls"] == 1 + len(it["retries"])
    stolen = [r for r in it["retries"] if r["steal_pct"] > 5]
    assert len(stolen) == 1 and stolen[0]["steal_pct"] == pytest.approx(10.0, abs=1.0)
    assert it["metrics"]["steal_pct"] < 5 and "steal" not in it["noise"]["flags"]
    assert f"{len(it['retries'])} noisy attempt(s) measured again" in capsys.readouterr().out


def test_another_live_run_and_its_cpu_are_flagged(tmp_path):
    other = start("run", "veth", "-t", "TCP_STREAM", "-l", "8", "--warmup", "0", "-o", str(tmp_path / "other.json"))
    try:
        deadline = time.monotonic() + 20
        while not any(len(r.pids) >= 2 for r in runs_of(other.pid)):
            assert other.poll() is None and time.monotonic() < deadline, other.communicate()
            time.sleep(0.05)
        out = tmp_path / "r.json"
        proc = vdevperf("run", "veth", "-t", "TCP_RR", *SHORT, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
    finally:
        other.communicate(timeout=60)
    noise = json.loads(out.read_text())["runs"][0]["iterations"][0]["noise"]
    assert {"other-run", "foreign-cpu"} <= set(noise["flags"])
    assert noise["other_runs"] and noise["foreign"]["cpu_pct"] > 10
    assert any(top["pid"] != other.pid for top in noise["foreign"]["top"])  # its endpoints, not only its parent
    row = next(line for line in proc.stdout.splitlines() if line.startswith("veth"))
    assert "~" in row and "another vdevperf run was live in 1" in proc.stdout
