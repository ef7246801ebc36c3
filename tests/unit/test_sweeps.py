"""Sweeps without a kernel: --sweep parsing, the config of each value, the paired verdicts' wiring
(each value against the first on its own topology), the stored field, the table and the plot."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from vdevperf import bench, sweeps
from vdevperf.cli.argtypes import sweep as parse_sweep
from vdevperf.measure import cpu
from vdevperf.measure.paired import FASTER, NO_DIFFERENCE, analyse
from vdevperf.model import FlowMetrics, Iteration, Metrics, RunResult, RunStatus, TestConfig, TestName
from vdevperf.report import formats
from vdevperf.report.table import sweep_table
from vdevperf.results import ResultFile, load, runs_of

REPO = Path(__file__).resolve().parents[2]


def vdevperf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "vdevperf", *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


@pytest.mark.parametrize(
    "text, param, values, label",
    [
        ("mtu=1500,9000,65535", sweeps.Param.MTU, (1500, 9000, 65535), "mtu=9000"),
        ("size=64,1K,16K,128K", sweeps.Param.SIZE, (64, 1024, 16384, 131072), "size=1K"),
        ("SIZE=1m, 100", sweeps.Param.SIZE, (1024**2, 100), "size=100"),
    ],
)
def test_a_sweep_parses_with_the_size_parsers_suffixes(text, param, values, label):
    swept = parse_sweep(text)
    assert swept.param is param and swept.values == values
    assert swept.label(values[1]) == label and swept.baseline == swept.label(values[0])
    assert parse_sweep(swept.text) == swept  # the label spelling reads back


@pytest.mark.parametrize(
    "text, why",
    [
        ("speed=1,2", "sweep one of mtu, size"),
        ("mtu", "give the values as mtu=V1,V2"),
        ("mtu=1500,,9000", "give the values as mtu=V1,V2"),
        ("mtu=1500,9k", "an MTU is a whole number of bytes"),
        ("mtu=1500", "at least two values"),
        ("mtu=1500,1500", "each value once"),
        ("mtu=67,1500", "mtu 67 is outside 68-65535"),
        ("mtu=1500,65536", "mtu 65536 is outside"),
        ("size=0,1K", "not a positive byte count"),
        ("size=1K,17M", "size 17M is outside"),
    ],
)
def test_bad_sweeps_are_refused_with_one_reason(text, why):
    with pytest.raises(argparse.ArgumentTypeError, match=why):
        parse_sweep(text)


def test_size_sets_send_and_receive_of_stream_tests_and_request_and_response_of_rr_tests():
    swept = parse_sweep("size=64,16K")
    stream, rr = TestConfig(TestName.TCP_STREAM), TestConfig(TestName.UDP_RR, send_size=4096)
    s, r = swept.config(stream, 16384), swept.config(rr, 64)
    assert (s.send_size, s.recv_size, s.request_size, s.response_size) == (16384, 16384, 1, 1)
    assert (r.request_size, r.response_size, r.send_size) == (64, 64, 4096)
    mtu = parse_sweep("mtu=1500,9000")
    assert mtu.config(stream, 9000) == stream  # the path changes, not the test
    with pytest.raises(ValueError, match="below IPv6's minimum 1280"):
        mtu.config(dataclasses.replace(stream, ip_version=6), 1000)
    with pytest.raises(ValueError, match="UDP message carries at most 65507"):
        sweeps.configs(parse_sweep("size=64,128K"), [TestConfig(TestName.UDP_STREAM)])


@pytest.mark.parametrize(
    "args, why",
    [
        (
            ["--sweep", "mtu=1500,9000", "--sweep", "size=64,1K"],
            "--sweep: one parameter at a time; got mtu=1500,9000 and size=64,1K",
        ),
        (["--sweep", "mtu=1500"], "argument --sweep: mtu: give at least two values"),
        (
            ["--sweep", "size=64,128K", "-t", "UDP_STREAM"],
            "--sweep: size=64,128K: -m/-r: a UDP message carries at most",
        ),
        (["--sweep", "mtu=1500,9000", "-i", "3"], "-i/-I: a sweep repeats in interleaved rounds"),
        (["--sweep", "mtu=1500,9000", "--offload-matrix", "tso"], "--sweep: cannot go with --offload-matrix"),
        (["--sweep", "mtu=1000,1500", "-6"], "--sweep: mtu=1000,1500: mtu 1000 is below IPv6's minimum"),
    ],
)
def test_the_cli_refuses_in_one_line_with_exit_2_before_building(args, why, tmp_path):
    proc = vdevperf("run", "veth", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert why in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # not even the result file was claimed


def test_compare_refuses_a_sweep_with_a_topology_baseline():
    proc = vdevperf("compare", "veth", "bridge", "--sweep", "mtu=1500,9000", "--baseline", "bridge")
    assert proc.returncode == 2 and "--baseline: cannot go with --sweep" in proc.stderr


# Synthetic sweep runs: known per-round rates, so the verdicts are known.


def _metrics(rate: float) -> Metrics:
    return Metrics(
        elapsed_s=1.0,
        throughput_mbps=rate,
        transactions_per_s=None,
        mean_latency_us=None,
        cpu_util_pct=50.0,
        softirq_pct=5.0,
        service_demand_us_per_kb=50.0 / rate,
        service_demand_us_per_tr=None,
        flows=(FlowMetrics(0, rate),),
    )


_RAW = {
    "cpu_fields": list(cpu.FIELDS),
    "counter_names": [],
    "samples": [
        {
            "t_s": 0.0,
            "cpu": [[0.0] * len(cpu.FIELDS)],
            "counters": [],
            "proc_cpu_s": None,
            "remote_cpu": None,
            "remote_t_s": None,
        }
    ]
    * 2,
    "histogram_sub_bits": 8,
    "latency_histograms": [],
    "sampler_cpu_s": None,
}


def _sweep_run(topology: str, swept: sweeps.Sweep, value: int, rates: list[float]) -> RunResult:
    cfg = swept.config(TestConfig(TestName.TCP_STREAM), value)
    its = tuple(
        Iteration(
            metrics=_metrics(r),
            endpoints=[],
            raw=_RAW,
            cpu_breakdown={"machine": {}, "per_cpu": []},
            series=[],
            round=n,
        )
        for n, r in enumerate(rates)
    )
    return RunResult(
        topology=topology,
        topology_source=f"{topology}.toml",
        config=cfg,
        status=RunStatus.OK,
        metrics=_metrics(sum(rates) / len(rates)),
        iterations=its,
        sweep=swept.point(value),
    )


def _drifting(factor: float, seed: int) -> list[float]:
    """Eight rounds that drift together (the machine), times ``factor`` (the value's effect)."""
    rng = random.Random(seed)
    return [factor * 1000 * (1 + 0.3 * math.sin(n)) * math.exp(rng.gauss(0, 0.01)) for n in range(8)]


def test_each_value_is_judged_against_the_first_value_on_its_own_topology():
    swept = parse_sweep("size=64,16K")
    runs = [
        _sweep_run("veth", swept, 64, _drifting(1.0, 1)),
        _sweep_run("veth", swept, 16384, _drifting(2.0, 2)),
        # bridge is 10x veth throughout: judged against bridge's 64, it shows no change of its own.
        _sweep_run("bridge", swept, 64, _drifting(10.0, 3)),
        _sweep_run("bridge", swept, 16384, _drifting(10.0, 4)),
    ]
    p = bench.SWEEP_PAIRING
    cells = {(c.arm, c.metric): c for c in analyse(runs, p.arm, p.baseline, 0.05, p.key)}
    assert {arm for arm, _ in cells} == {"veth size=16K", "bridge size=16K"}
    veth = cells[("veth size=16K", "rate")]
    assert veth.judged.estimate.geomean == pytest.approx(2.0, rel=0.05) and veth.judged.verdict == FASTER
    assert veth.rounds == tuple(range(8))
    assert cells[("bridge size=16K", "rate")].judged.verdict == NO_DIFFERENCE
    # One family: Holm adjusts over every cell of both topologies.
    assert all(c.judged.p_adjusted is not None for c in cells.values())


def test_a_sweep_file_stores_each_value_apart_and_renders_again(tmp_path):
    swept = parse_sweep("mtu=1500,9000")
    results = ResultFile(path=tmp_path / "sweep.json", command=["test"])
    low, high = _sweep_run("veth", swept, 1500, _drifting(1.0, 5)), _sweep_run("veth", swept, 9000, _drifting(1.5, 6))
    results.put(low)
    results.put(high)  # same topology and config: kept apart by the value
    assert len(results.runs) == 2
    p = bench.SWEEP_PAIRING
    cells = analyse(results.runs, p.arm, p.baseline, 0.05, p.key)
    results.comparison = {
        "baseline": swept.baseline,
        "alpha": 0.05,
        "method": "m",
        "correction": "c",
        "plan": {
            "rounds": 8,
            "seed": 3,
            "target_ci_pct": None,
            "max_time_s": None,
            "max_steal_pct": 5.0,
            "max_retries": 2,
        },
        "placement": {"label": "unpinned"},
        "orders": [["veth mtu=1500 TCP_STREAM", "veth mtu=9000 TCP_STREAM"]] * 8,
        "stopped": "8 rounds",
        "seconds": 1.0,
        "cells": [c.to_json() for c in cells],
    }
    results.save()
    document = load(results.path)  # checked against the schema
    assert [r["sweep"]["label"] for r in document["runs"]] == ["mtu=1500", "mtu=9000"]
    again = runs_of(results.path, document)
    assert [r.sweep["value"] for r in again] == [1500, 9000]
    table = formats.render(again, "plain", None, document["comparison"])
    assert table == sweep_table(again, document["comparison"])
    lines = table.splitlines()
    assert lines[0] == "sweep mtu=1500,9000: each value against mtu=1500 on the same topology"
    assert "Value" in lines[2] and "vs mtu=1500" in lines[2]
    body = [line for line in lines if line.startswith("veth")]
    assert "1500" in body[0] and "baseline" in body[0]
    rate = next(c for c in cells if c.metric == "rate")
    assert rate.judged.estimate.geomean == pytest.approx(1.5, rel=0.02)
    assert "9000" in body[1] and f"{rate.judged.estimate.geomean:.2f}x" in body[1] and FASTER in body[1]
    # A run without the key (every file before sweeps) still loads: the key is optional.
    plain = json.loads(results.path.read_text())
    del plain["runs"][0]["sweep"]
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    assert runs_of(tmp_path / "plain.json", load(tmp_path / "plain.json"))[0].sweep is None


def test_a_refused_value_says_why_in_its_row(tmp_path):
    swept = parse_sweep("mtu=1500,65535")
    refused = RunResult(
        topology="vxlan",
        topology_source="vxlan.toml",
        config=TestConfig(TestName.TCP_STREAM),
        status=RunStatus.UNSUPPORTED,
        reason="device 'x0' refused MTU 65535: Invalid argument",
        sweep=swept.point(65535),
    )
    runs = [_sweep_run("vxlan", swept, 1500, _drifting(1.0, 7)), refused]
    table = sweep_table(runs, {})
    assert "mtu=65535 unsupported here (see below)" in table
    assert table.splitlines()[-1] == "vxlan mtu=65535: device 'x0' refused MTU 65535: Invalid argument"


def test_the_sweep_plot_is_a_png_of_real_size(tmp_path):
    swept = parse_sweep("size=64,1K,16K")
    results = ResultFile(path=tmp_path / "sweep.json", command=["test"])
    for topology, scale in (("veth", 1.0), ("bridge", 0.8)):
        for n, value in enumerate(swept.values):
            results.put(_sweep_run(topology, swept, value, _drifting(scale * (n + 1), n)))
    results.save()
    out = tmp_path / "sweep.png"
    proc = vdevperf("plot", str(results.path), "--kind", "sweep", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    proc = vdevperf(
        "plot", str(Path(__file__).parents[1] / "data" / "result-v3.json"), "--kind", "sweep", "-o", str(out)
    )
    assert proc.returncode == 2 and "no measured sweep runs to draw (run with --sweep)" in proc.stderr
