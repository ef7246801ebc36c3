"""Figures of runs against a vdevperf server: remote CPU from the server's readings, and their storage."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from vdevperf import bench
from vdevperf.counters import BYTES_RECEIVED, SLOTS, TRANSACTIONS, counter_names, slot_index
from vdevperf.measure import cpu
from vdevperf.measure.endpoints import EndpointReport, Finished, Ready, SocketFacts
from vdevperf.measure.metrics import derive
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import RunResult, RunStatus, TestConfig, TestName
from vdevperf.report.table import run_table
from vdevperf.results import ResultFile, load

SCHEMA = json.loads((Path(__file__).parents[2] / "vdevperf" / "schema" / "result.schema.json").read_text())
IDLE = cpu.FIELDS.index("idle")
SOFTIRQ = cpu.FIELDS.index("softirq")


def _cpus(n: int, idle: float, softirq: float = 0.0) -> list[list[float]]:
    rows = [[0.0] * len(cpu.FIELDS) for _ in range(n)]
    for row in rows:
        row[IDLE], row[SOFTIRQ] = idle, softirq
    return rows


def _raw(test: TestName, work: int) -> RawRun:
    """Two samples 2 s apart: the client host (2 CPUs) half idle, the server host (4 CPUs) a quarter busy."""
    role, slot = ("server", BYTES_RECEIVED) if test.is_stream else ("client", TRANSACTIONS)
    names = counter_names(1)
    end = [0] * len(names)
    end[slot_index(0, role, slot)] = work
    first = Sample(0.0, _cpus(2, 0.0), [0] * len(names), [0.0, 0.0], remote_cpu=_cpus(4, 100.0), remote_t_s=0.0)
    last = Sample(2.0, _cpus(2, 1.0), end, [0.5, 0.4], remote_cpu=_cpus(4, 101.5, softirq=0.05), remote_t_s=2.0)
    endpoints = [
        EndpointReport(
            0,
            r,
            Ready(1, None, (0,), SocketFacts(0, 0)),
            Finished({0: 2}, (0,) * len(SLOTS)),
        )
        for r in ("client", "server")
    ]
    return RawRun(
        samples=[first, last], endpoints=endpoints, histograms=[{}] if not test.is_stream else [], sampler_cpu_s=0.0
    )


@pytest.mark.parametrize("test", [TestName.TCP_STREAM, TestName.TCP_RR])
def test_remote_figures_come_from_the_servers_own_readings(test):
    work = 4 * 1024 * 1024 if test.is_stream else 1000
    m = derive(test, 1, _raw(test, work))
    assert m.cpu_util_pct == pytest.approx(50.0)  # client host: 2 of 4 CPU-seconds busy
    assert m.remote_cpu_util_pct == pytest.approx(25.0)  # server host: 2 of 8 CPU-seconds busy
    assert m.remote_softirq_pct == pytest.approx(2.5)
    units = work / 1024 if test.is_stream else work
    remote_demand = m.remote_service_demand_us_per_kb if test.is_stream else m.remote_service_demand_us_per_tr
    assert remote_demand == pytest.approx(2.0 * 1e6 / units)
    other = m.remote_service_demand_us_per_tr if test.is_stream else m.remote_service_demand_us_per_kb
    assert other is None
    # Each side's processes are a share of their own host; the rest is the client host's.
    assert m.client_cpu_pct == pytest.approx(12.5) and m.server_cpu_pct == pytest.approx(5.0)
    assert m.elsewhere_cpu_pct == pytest.approx(37.5)


def test_local_runs_have_no_remote_figures():
    raw = _raw(TestName.TCP_STREAM, 1024)
    local = RawRun(
        samples=[Sample(s.t_s, s.cpu, s.counters, s.proc_cpu_s) for s in raw.samples],
        endpoints=raw.endpoints,
        histograms=[],
        sampler_cpu_s=0.0,
    )
    m = derive(TestName.TCP_STREAM, 1, local)
    assert m.remote_cpu_util_pct is None and m.remote_service_demand_us_per_kb is None
    assert m.client_cpu_pct + m.server_cpu_pct + m.elsewhere_cpu_pct == pytest.approx(m.cpu_util_pct)


def test_remote_runs_are_stored_read_back_and_shown(tmp_path):
    cfg = TestConfig(test=TestName.TCP_RR, duration_s=2.0)
    raw = _raw(cfg.test, 1000)
    facts = {"software": "vdevperf 0.1.0", "hostname": "b", "kernel": "6.1", "cpu_model": None, "cpu_count": 4}
    run = RunResult(
        topology=bench.REMOTE,
        topology_source="198.18.0.2:12866",
        config=cfg,
        status=RunStatus.OK,
        metrics=derive(cfg.test, 1, raw),
        iterations=(bench.iteration(cfg, raw),),
        remote={"address": "198.18.0.2:12866", "server": facts},
    )
    results = ResultFile(path=tmp_path / "r.json", command=["vdevperf"])
    results.add(run)
    document = load(tmp_path / "r.json")
    jsonschema.validate(document, SCHEMA)
    assert document["runs"][0]["iterations"][0]["raw"]["samples"][1]["remote_t_s"] == 2.0
    table = run_table(results.runs)
    assert "remote CPU %" in table.splitlines()[0] and "25.00" in table.splitlines()[2]


def test_version_4_files_upgrade_to_local_runs():
    document = load(Path(__file__).parents[1] / "data" / "result-v4.json")
    jsonschema.validate(document, SCHEMA)
    for run in document["runs"]:
        assert run["remote"] is None and run["metrics"]["remote_cpu_util_pct"] is None
        for it in run["iterations"]:
            assert all(s["remote_cpu"] is None and s["remote_t_s"] is None for s in it["raw"]["samples"])
