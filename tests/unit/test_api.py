"""The Python API without root: typed results from every old schema version, cheap import, errors raised."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import vdevperf
from vdevperf.errors import ResultError, TopologyError, VdevperfError
from vdevperf.model import Metrics, RunResult, RunStatus, TestName

DATA = Path(__file__).resolve().parents[1] / "data"
REPO = Path(__file__).resolve().parents[2]
OLD_FILES = ["result-v1.json", "result-v2.json", "result-v3.json", "result-v4.json", "result-v6-confidence.json"]


@pytest.mark.parametrize("name", OLD_FILES)
def test_load_results_gives_typed_runs_of_every_schema_version(name):
    path = DATA / name
    results = vdevperf.load_results(path)
    stored = json.loads(path.read_text())["runs"]
    assert isinstance(results, vdevperf.Results) and results.path == path
    assert len(results.runs) == len(stored) > 0
    for run, raw in zip(results.runs, stored, strict=True):
        assert isinstance(run, RunResult) and isinstance(run.config.test, TestName)
        assert run.topology == raw["topology"] and run.config.test == raw["test"]
        if run.status is RunStatus.OK:
            assert isinstance(run.metrics, Metrics) and run.iterations
    assert results.ratios == () and results.baseline is None and results.seed is None


def test_load_results_of_a_compare_gives_typed_ratios():
    path = DATA / "result-v6-compare.json"
    comparison = json.loads(path.read_text())["comparison"]
    results = vdevperf.load_results(str(path))
    assert results.baseline == "veth" and results.seed == comparison["plan"]["seed"]
    assert len(results.ratios) == len(comparison["cells"]) == 4
    for cell, raw in zip(results.ratios, comparison["cells"], strict=True):
        assert isinstance(cell, vdevperf.Ratio) and cell.test is TestName(raw["test"])
        assert (cell.arm, cell.metric, list(cell.rounds), list(cell.ratios)) == (
            raw["arm"],
            raw["metric"],
            raw["rounds"],
            raw["ratios"],
        )
        assert (cell.geomean, cell.low, cell.high, cell.verdict) == (
            raw["geomean"],
            raw["low"],
            raw["high"],
            raw["verdict"],
        )
    assert results.ratio("loopback", "TCP_RR", "cpu_util_pct").metric == "cpu_util_pct"
    assert results.run("TCP_RR", "veth").topology == "veth"
    with pytest.raises(KeyError):
        results.run("TCP_RR")  # two topologies ran it: say which
    with pytest.raises(KeyError):
        results.ratio("veth", "TCP_RR")  # the baseline has no ratio to itself


def test_load_results_refuses_a_bad_file_with_vdevperfs_error():
    with pytest.raises(ResultError, match="newer"):
        vdevperf.load_results(DATA / "bad_results" / "newer.json")


def test_importing_vdevperf_loads_nothing_heavy_and_builds_nothing():
    code = "import sys, vdevperf; print(' '.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    loaded = set(proc.stdout.split())
    assert "vdevperf" in loaded
    assert not loaded & {"vdevperf.api", "vdevperf.bench", "scipy", "pyroute2", "psutil", "tabulate"}
    assert {"run", "compare", "load_results", "Results"} <= set(dir(vdevperf))
    with pytest.raises(AttributeError):
        vdevperf.no_such_thing  # noqa: B018


@pytest.mark.parametrize(
    ("call", "error", "what"),
    [
        (lambda: vdevperf.run("veth", "TCP_NOPE"), VdevperfError, "tests"),
        (lambda: vdevperf.run("no-such-topology"), TopologyError, "no-such-topology"),
        (lambda: vdevperf.run("veth", cpus=(0, 4096)), VdevperfError, "-T/--cpu"),
        (lambda: vdevperf.run("veth", length_s=0), VdevperfError, "-l"),
        (lambda: vdevperf.run("veth", offload="tso=maybe"), VdevperfError, "offload"),
        (lambda: vdevperf.compare(["veth"], baseline="bridge"), VdevperfError, "baseline"),
        (lambda: vdevperf.compare(["veth", "bridge"], rounds=0), VdevperfError, "--rounds"),
    ],
)
def test_bad_arguments_raise_vdevperf_errors_not_system_exit(call, error, what):
    with pytest.raises(error) as raised:
        call()
    assert raised.value.what.startswith(what)


def test_an_unwritable_output_is_refused_before_anything_is_built(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ResultError):
        vdevperf.run("veth", "TCP_RR", output=tmp_path / "file" / "r.json")


def test_every_public_name_resolves_to_what_its_module_defines():
    from vdevperf import api, errors, model

    assert sorted(vdevperf.__all__) == sorted(vdevperf._LAZY)
    for name in vdevperf.__all__:
        home = {"vdevperf.api": api, "vdevperf.errors": errors, "vdevperf.model": model}[vdevperf._LAZY[name]]
        assert getattr(vdevperf, name) is getattr(home, name)
