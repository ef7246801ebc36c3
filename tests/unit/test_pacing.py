"""-b, --fq-rate and --rate as data: their checks, how mixed tests share them, the CLI's refusals, the
result file keeping them (and files without them unchanged), and the table's asked-rate column."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from vdevperf import api, bench
from vdevperf.cli.argtypes import bitrate
from vdevperf.errors import VdevperfError
from vdevperf.model import RunResult, RunStatus, TestConfig, TestName
from vdevperf.remote.client import RemoteTarget
from vdevperf.results import ResultFile, run_from_json, run_to_json

SCHEMA = json.loads((Path(__file__).parents[2] / "vdevperf" / "schema" / "result.schema.json").read_text())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"test": TestName.TCP_RR, "rate_bps": 1e9}, "-b: paces TCP_STREAM, TCP_MAERTS, UDP_STREAM, not TCP_RR"),
        ({"test": TestName.TCP_SENDFILE, "rate_bps": 1e9}, "-b: paces .* not TCP_SENDFILE"),
        ({"test": TestName.TCP_STREAM, "rate_tps": 100}, "--rate: paces TCP_RR, UDP_RR, not TCP_STREAM"),
        ({"test": TestName.TCP_CRR, "rate_tps": 100}, "--rate: paces TCP_RR, UDP_RR, not TCP_CRR"),
        ({"test": TestName.UDP_STREAM, "fq_rate_bps": 1e9}, "--fq-rate: SO_MAX_PACING_RATE paces UDP only under"),
        ({"test": TestName.TCP_STREAM, "rate_bps": 1e9, "fq_rate_bps": 1e9}, "one way of pacing at a time"),
        ({"test": TestName.TCP_STREAM, "rate_bps": 1e9, "zerocopy": True}, "-b: paces plain sends; not with -Z"),
        ({"test": TestName.TCP_STREAM, "rate_bps": 10.0}, "-b: 10 is outside"),
        ({"test": TestName.TCP_STREAM, "rate_bps": float("inf")}, "-b: inf is outside"),
        ({"test": TestName.TCP_RR, "rate_tps": 0.5}, "--rate: 0.5 is outside"),
        ({"test": TestName.TCP_RR, "rate_tps": float("nan")}, "--rate: nan is outside"),
    ],
)
def test_pacing_is_refused_where_it_does_not_apply(fields, message):
    with pytest.raises(ValueError, match=message):
        TestConfig(**fields)


def test_the_offered_load_is_split_evenly_between_flows_and_shown_in_the_rate_units():
    stream = TestConfig(test=TestName.TCP_STREAM, rate_bps=2e9, flows=4)
    assert stream.flow_rate_bps == 5e8 and stream.asked_rate == 2000.0
    assert TestConfig(test=TestName.TCP_STREAM, fq_rate_bps=1e9).asked_rate == 1000.0
    rr = TestConfig(test=TestName.UDP_RR, rate_tps=3000, flows=3)
    assert rr.flow_rate_tps == 1000 and rr.asked_rate == 3000
    plain = TestConfig(test=TestName.TCP_STREAM)
    assert plain.asked_rate is plain.flow_rate_bps is plain.flow_rate_tps is None


@pytest.mark.parametrize(
    ("text", "bps"), [("2G", 2e9), ("500M", 5e8), ("1.5g", 1.5e9), ("100k", 1e5), ("1T", 1e12), ("64000", 64e3)]
)
def test_rates_read_as_iperf3_reads_them_in_powers_of_1000(text, bps):
    assert bitrate(text) == bps


@pytest.mark.parametrize("text", ["", "G", "2X", "-1G", "0", "999", "2T", "nan", "infG"])
def test_a_bad_rate_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not a rate within 1k-1T bits/s"):
        bitrate(text)


def test_mixed_tests_each_take_the_pacing_of_their_kind():
    cfgs = api.test_configs(
        [TestName.TCP_STREAM, TestName.TCP_RR, TestName.TCP_CRR], api.UNPINNED, rate_bps=1e9, rate_tps=None
    )
    with pytest.raises(VdevperfError, match="--rate: paces TCP_RR, UDP_RR, not TCP_CRR"):
        api.test_configs([TestName.TCP_RR, TestName.TCP_CRR], api.UNPINNED, rate_tps=100)
    cfgs = api.test_configs([TestName.TCP_STREAM, TestName.UDP_RR], api.UNPINNED, rate_bps=1e9, rate_tps=500)
    assert [(c.rate_bps, c.rate_tps) for c in cfgs] == [(1e9, None), (None, 500)]
    with pytest.raises(VdevperfError, match="-b: paces .* not TCP_RR"):
        api.test_configs([TestName.TCP_RR], api.UNPINNED, rate_bps=1e9)


def _vdevperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vdevperf", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["-t", "TCP_CRR", "--rate", "100"], "vdevperf: --rate: paces TCP_RR, UDP_RR, not TCP_CRR"),
        (["-t", "TCP_STREAM", "-b", "fast"], "argument -b/--bitrate: 'fast' is not a rate within 1k-1T bits/s"),
        (["-t", "TCP_RR", "--rate", "0"], "argument --rate: '0' is not a number within 1-1e+07 transactions/s"),
    ],
)
def test_the_cli_refuses_bad_pacing_in_one_line_before_building(args, line):
    done = _vdevperf("run", "veth", *args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and line in done.stderr


def test_a_remote_server_is_not_asked_to_pace(tmp_path):
    target = RemoteTarget("192.0.2.1", 9, b"x" * 32)
    results = ResultFile(path=tmp_path / "r.json", command=["vdevperf", "run"])
    with pytest.raises(VdevperfError, match="a remote server does not pace its sends"):
        bench.run_remote(target, [TestConfig(test=TestName.TCP_MAERTS, rate_bps=1e9)], results)


def _run(cfg: TestConfig) -> RunResult:
    return RunResult("veth", "topologies/veth.toml", cfg, RunStatus.UNSUPPORTED, reason="not here")


def test_the_result_file_keeps_the_pacing_and_leaves_other_files_unchanged():
    paced = TestConfig(test=TestName.TCP_RR, rate_tps=2500.0)
    doc = run_to_json(_run(paced))
    assert doc["config"]["rate_tps"] == 2500.0 and "rate_bps" not in doc["config"]
    assert run_from_json(json.loads(json.dumps(doc))).config == paced
    plain = run_to_json(_run(TestConfig(test=TestName.TCP_RR)))["config"]
    assert not {"rate_bps", "fq_rate_bps", "rate_tps"} & set(plain)
    config_schema = SCHEMA["$defs"]["run"]["properties"]["config"]
    jsonschema.validate(doc["config"], config_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc["config"] | {"rate_tps": -1}, config_schema)
