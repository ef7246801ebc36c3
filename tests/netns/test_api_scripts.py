"""The Python API as a user has it: a script that imports vdevperf, runs, compares, and reads typed results."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import leaked_by, snapshot

import vdevperf
from vdevperf.measure.paired import FASTER, NO_DIFFERENCE, SLOWER, UNTESTED

REPO = Path(__file__).resolve().parents[2]

RUN_SCRIPT = """
import json, sys
import vdevperf
from vdevperf.model import Metrics, RunResult, RunStatus, TestName

out = sys.argv[1]
result = vdevperf.run("veth", ["TCP_RR", "TCP_STREAM"], length_s=1, warmup_s=0.2, cpus=(0, 1), output=out)
assert isinstance(result, vdevperf.Results), type(result)
assert all(isinstance(r, RunResult) and isinstance(r.metrics, Metrics) for r in result.runs)
rr, stream = result.run("TCP_RR"), result.run(TestName.TCP_STREAM)
again = vdevperf.load_results(out)
print(json.dumps({
    "path": str(result.path),
    "tests": [str(r.config.test) for r in result.runs],
    "status": [r.status.value for r in result.runs],
    "cpus": [[r.config.client_cpu, r.config.server_cpu] for r in result.runs],
    "durations": [r.config.duration_s for r in result.runs],
    "transactions_per_s": rr.metrics.transactions_per_s,
    "throughput_mbps": stream.metrics.throughput_mbps,
    "p99_latency_us": rr.metrics.p99_latency_us,
    "reloaded_same": [r.metrics for r in again.runs] == [r.metrics for r in result.runs],
}))
"""

COMPARE_SCRIPT = """
import json
import vdevperf
from vdevperf.measure.noise import distorted
from vdevperf.model import TestName

result = vdevperf.compare(["veth", "bridge"], "TCP_RR", rounds=2, seed=7, length_s=0.5, warmup_s=0.1)
assert all(isinstance(c, vdevperf.Ratio) and isinstance(c.test, TestName) for c in result.ratios)
print(json.dumps({
    "path": result.path,
    "baseline": result.baseline,
    "seed": result.seed,
    "runs": [[r.topology, str(r.config.test), sorted({it.round for it in r.iterations})] for r in result.runs],
    # Rounds another process disturbed leave the ratios (measure.noise); on a busy machine, all may.
    "flagged": sorted(
        {it.round for r in result.runs for it in r.iterations if distorted((it.noise or {}).get("flags"))}
    ),
    "cells": [
        [c.arm, str(c.test), c.metric, list(c.rounds), list(c.ratios), c.geomean, c.verdict] for c in result.ratios
    ],
}))
"""


def script(code: str, *args: str, cwd: Path) -> dict:
    """Run ``code`` as a user's script in its own interpreter; its JSON line, and nothing of it left behind."""
    before = snapshot()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert not leaked_by(proc.pid, before)
    return json.loads(stdout.splitlines()[-1])


def test_run_from_a_script_returns_typed_results_and_writes_the_file(tmp_path):
    out = tmp_path / "api.json"
    got = script(RUN_SCRIPT, str(out), cwd=tmp_path)
    assert got["path"] == str(out)
    assert got["tests"] == ["TCP_RR", "TCP_STREAM"] and got["status"] == ["ok", "ok"]
    assert got["cpus"] == [[0, 1], [0, 1]] and got["durations"] == [1.0, 1.0]
    assert got["transactions_per_s"] > 100 and got["throughput_mbps"] > 10 and got["p99_latency_us"] > 0
    assert got["reloaded_same"]
    document = json.loads(out.read_text())
    assert document["schema_version"] == 6 and document["command"][0].startswith("vdevperf.run(")


def test_compare_from_a_script_returns_paired_ratios_and_verdicts(tmp_path):
    got = script(COMPARE_SCRIPT, cwd=tmp_path)
    assert got["path"] is None and not (tmp_path / "results").exists()  # no output asked for: no file
    assert got["baseline"] == "veth" and got["seed"] == 7
    assert got["runs"] == [["veth", "TCP_RR", [0, 1]], ["bridge", "TCP_RR", [0, 1]]]
    paired = [r for r in (0, 1) if r not in got["flagged"]]
    rate = [c for c in got["cells"] if c[2] == "rate"]
    if not paired:
        assert got["cells"] == []
        return
    (arm, test, _, rounds, ratios, geomean, verdict) = rate[0]
    assert len(rate) == 1 and (arm, test, rounds) == ("bridge", "TCP_RR", paired)
    assert len(ratios) == len(paired) and all(r > 0 for r in ratios) and geomean > 0
    assert verdict in (FASTER, SLOWER, NO_DIFFERENCE, UNTESTED)


class Stop(Exception):
    pass


def test_an_exception_in_the_middle_of_a_run_tears_everything_down():
    # The autouse leak check fails this test if the namespaces built for the run remain.
    seen = []

    def progress(step):
        seen.append(step.label)
        raise Stop

    with pytest.raises(Stop):
        vdevperf.run("veth", "TCP_RR", length_s=1, warmup_s=0, progress=progress)
    assert seen == ["veth TCP_RR"]
