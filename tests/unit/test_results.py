"""The result file format: round trip, schema, versions, atomic writes (no root needed)."""

import json
from pathlib import Path

import jsonschema
import pytest

from vdevperf import bench
from vdevperf.counters import BYTES_RECEIVED, SLOTS, counter_names, slot_index
from vdevperf.errors import ResultError
from vdevperf.measure import cpu
from vdevperf.measure.endpoints import EndpointReport, Finished, Ready, SocketFacts
from vdevperf.measure.metrics import derive
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import RunResult, RunStatus, TestConfig, TestName
from vdevperf.results import SCHEMA_VERSION, ResultFile, load, run_from_json, run_to_json

SCHEMA = json.loads((Path(__file__).parents[2] / "vdevperf" / "schema" / "result.schema.json").read_text())


def _measured_run() -> RunResult:
    first = Sample(0.0, [[0.0] * len(cpu.FIELDS)], [0] * len(counter_names(1)))
    last_counters = [0] * len(counter_names(1))
    last_counters[slot_index(0, "server", BYTES_RECEIVED)] = 10 * 1024 * 1024
    busy = [1.0, 0.0, 0.5, 2.5, 0.0, 0.0, 0.2, 0.0]
    last = Sample(4.0, [busy], last_counters)
    cfg = TestConfig(test=TestName.TCP_STREAM, duration_s=4.0)
    endpoints = [
        EndpointReport(
            0,
            role,
            Ready(1, None, (0,), SocketFacts(0, 0)),
            Finished({0: 2}, (0,) * len(SLOTS)),
        )
        for role in ("client", "server")
    ]
    raw = RawRun(samples=[first, last], endpoints=endpoints, histograms=[], sampler_cpu_s=0.001)
    return RunResult(
        topology="veth",
        topology_source="topologies/veth.toml",
        config=cfg,
        status=RunStatus.OK,
        metrics=derive(cfg.test, 1, raw),
        iterations=(bench.iteration(cfg, raw),),
    )


def _unsupported_run() -> RunResult:
    return RunResult(
        topology="ipvlan",
        topology_source="topologies/ipvlan.toml",
        config=TestConfig(test=TestName.TCP_RR),
        status=RunStatus.UNSUPPORTED,
        reason="device kind 'ipvlan' is not supported by this kernel (CONFIG_IPVLAN)",
    )


def test_document_validates_and_round_trips(tmp_path):
    path = tmp_path / "r.json"
    results = ResultFile(path=path, command=["vdevperf", "compare"])
    results.add(_measured_run())
    results.add(_unsupported_run())
    document = load(path)
    jsonschema.validate(document, SCHEMA)
    assert document["schema_version"] == SCHEMA_VERSION
    runs = [run_from_json(r) for r in document["runs"]]
    assert runs == results.runs
    assert document["runs"][1]["metrics"]["throughput_mbps"] is None


def test_every_metric_key_is_present_even_when_null():
    doc = run_to_json(_unsupported_run())
    for key in (
        "throughput_mbps",
        "transactions_per_s",
        "cpu_util_pct",
        "softirq_pct",
        "service_demand_us_per_kb",
        "service_demand_us_per_tr",
    ):
        assert key in doc["metrics"]


def test_file_is_written_after_each_run_and_never_partial(tmp_path):
    path = tmp_path / "r.json"
    results = ResultFile(path=path, command=[])
    results.add(_measured_run())
    assert len(load(path)["runs"]) == 1
    results.add(_measured_run())
    assert len(load(path)["runs"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "runs": []}))
    with pytest.raises(ResultError, match="newer"):
        load(path)


@pytest.mark.parametrize(
    "text, why", [("{", "not JSON"), ("[]", "not a vdevperf result file"), ('{"runs": []}', "no schema_version")]
)
def test_not_a_result_file(tmp_path, text, why):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ResultError, match=why):
        load(path)


def test_golden_files_of_every_schema_version_load():
    golden = sorted((Path(__file__).parents[1] / "data").glob("result-v*.json"))
    written_by = {json.loads(path.read_text())["schema_version"] for path in golden}
    # Each file was written by the vdevperf of its version (v5: commit 0b2fd66^), not made up here.
    assert written_by == set(range(1, SCHEMA_VERSION + 1)), "tests/data needs one golden result per schema version"
    for path in golden:
        document = load(path)
        jsonschema.validate(document, SCHEMA)
        for run in document["runs"]:
            run_from_json(run)
