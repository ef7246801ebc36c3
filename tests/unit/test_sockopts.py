"""-K, -D and -Z as data: TestConfig's checks, and the result file keeping them (old files still load)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from vdevperf import bench
from vdevperf.errors import VdevperfError
from vdevperf.load.roles import check_socket_options, usable_congestion_controls
from vdevperf.measure.endpoints import SocketFacts
from vdevperf.model import RunResult, RunStatus, TestConfig, TestName
from vdevperf.remote.client import RemoteTarget
from vdevperf.results import ResultFile, load, run_from_json, run_to_json

SCHEMA = json.loads((Path(__file__).parents[2] / "vdevperf" / "schema" / "result.schema.json").read_text())


def _run(cfg: TestConfig) -> RunResult:
    return RunResult(
        topology="ipvlan",
        topology_source="topologies/ipvlan.toml",
        config=cfg,
        status=RunStatus.UNSUPPORTED,
        reason="device kind 'ipvlan' is not supported by this kernel (CONFIG_IPVLAN)",
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"congestion_control": "Reno"}, "-K: 'Reno' is not a congestion control name"),
        ({"congestion_control": "x" * 16}, "is not a congestion control name"),
        ({"congestion_control": ""}, "is not a congestion control name"),
        ({"test": TestName.UDP_STREAM, "nodelay": True}, "-D: a TCP socket option; UDP_STREAM runs over UDP"),
        ({"test": TestName.UDP_RR, "congestion_control": "reno"}, "-K: a TCP socket option; UDP_RR runs over UDP"),
        (
            {"test": TestName.TCP_RR, "zerocopy": True},
            "-Z: MSG_ZEROCOPY sends are for TCP_STREAM, TCP_MAERTS, not TCP_RR",
        ),
        ({"test": TestName.TCP_SENDFILE, "zerocopy": True}, "-Z: .* not TCP_SENDFILE"),
        ({"test": TestName.UDP_STREAM, "zerocopy": True}, "-Z: .* not UDP_STREAM"),
    ],
)
def test_test_config_refuses_bad_socket_options(fields, message):
    with pytest.raises(ValueError, match=message):
        TestConfig(**({"test": TestName.TCP_STREAM} | fields))


def test_tcp_tests_take_both_options():
    for test in (t for t in TestName if not t.is_udp):
        cfg = TestConfig(test=test, congestion_control="reno", nodelay=True)
        assert cfg.congestion_control == "reno" and cfg.nodelay


def test_a_result_keeps_the_options_and_validates(tmp_path):
    run = _run(TestConfig(test=TestName.TCP_STREAM, congestion_control="reno", nodelay=True, zerocopy=True))
    results = ResultFile(path=tmp_path / "r.json", command=["vdevperf", "run"])
    results.add(run)
    document = load(tmp_path / "r.json")
    jsonschema.validate(document, SCHEMA)
    assert document["runs"][0]["config"]["congestion_control"] == "reno"
    assert document["runs"][0]["config"]["nodelay"] is document["runs"][0]["config"]["zerocopy"] is True
    assert run_from_json(document["runs"][0]) == run


def test_a_result_without_the_options_loads_with_the_defaults(tmp_path):
    doc = run_to_json(_run(TestConfig(test=TestName.TCP_RR)))
    del doc["config"]["congestion_control"], doc["config"]["nodelay"], doc["config"]["zerocopy"]
    cfg = run_from_json(doc).config
    assert cfg.congestion_control is None and cfg.nodelay is False and cfg.zerocopy is False


def test_socket_facts_keep_nodelay_and_older_facts_load():
    facts = SocketFacts(1, 2, "reno", 1)
    assert SocketFacts.from_json(facts.to_json()) == facts
    assert SocketFacts.from_json({"sndbuf_bytes": 1, "rcvbuf_bytes": 2}) == SocketFacts(1, 2)


def test_only_loaded_algorithms_pass_the_check():
    usable = usable_congestion_controls()
    assert usable  # every kernel has reno
    check_socket_options(TestConfig(test=TestName.TCP_STREAM, congestion_control=sorted(usable)[0]))
    check_socket_options(TestConfig(test=TestName.TCP_STREAM))
    with pytest.raises(VdevperfError, match="congestion control 'nosuchcc' is not loaded here"):
        check_socket_options(TestConfig(test=TestName.TCP_STREAM, congestion_control="nosuchcc"))


@pytest.mark.parametrize("fields", [{"congestion_control": "reno"}, {"nodelay": True}, {"zerocopy": True}])
def test_remote_runs_refuse_the_options_before_connecting(tmp_path, fields):
    # Port 9 on a TEST-NET address: a connection attempt would fail differently (or hang), not with this.
    target = RemoteTarget("192.0.2.1", 9, b"x" * 32)
    results = ResultFile(path=tmp_path / "r.json", command=["vdevperf", "run"])
    with pytest.raises(VdevperfError, match="-K/-D/-Z: not carried to a vdevperf server yet"):
        bench.run_remote(target, [TestConfig(test=TestName.TCP_STREAM, **fields)], results)
