"""--bidir as data: which test each flow runs, where its work is counted, the figures per direction,
the refusals, and the result file and table keeping them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from vdevperf import bench
from vdevperf.counters import BYTES_RECEIVED, BYTES_SENT, ROLES, counter_names, slot_index
from vdevperf.errors import VdevperfError
from vdevperf.load.tests import TESTS, flow_def
from vdevperf.measure import cpu
from vdevperf.measure.metrics import derive, figure, flow_rates, series
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import FLOWS, Iteration, RunResult, RunStatus, TestConfig, TestName
from vdevperf.remote.client import RemoteTarget
from vdevperf.report.table import run_table
from vdevperf.results import ResultFile, load, run_from_json, run_to_json
from vdevperf.traits import TRAITS, flow_test, flow_tests, reversed_flow

SCHEMA = json.loads((Path(__file__).parents[2] / "vdevperf" / "schema" / "result.schema.json").read_text())
S, M = TestName.TCP_STREAM, TestName.TCP_MAERTS


def test_reverse_tests_pair_up_and_move_data_the_other_way():
    pairs = {t.name: t.reverse for t in TRAITS.values() if t.reverse is not None}
    assert pairs == {S: M, M: S}
    for test, reverse in pairs.items():
        mine, theirs = TRAITS[test], TRAITS[reverse]
        assert theirs.reverse is test  # the reverse of the reverse is the test itself
        assert (mine.kind, mine.protocol) == (theirs.kind, theirs.protocol)
        assert mine.work.slot == theirs.work.slot and mine.work.role != theirs.work.role
        assert mine.stop != theirs.stop
        # The loops swap ends: the client's loop of one is the server's loop of the other.
        assert (TESTS[test].client_loop, TESTS[test].server_loop) == (
            TESTS[reverse].server_loop,
            TESTS[reverse].client_loop,
        )


@pytest.mark.parametrize("test", list(TestName))
def test_every_test_stops_its_client_before_its_server(test):
    # runner._finish stops, across flows of different tests, every client before any server.
    stop = TRAITS[test].stop
    assert list(stop) == sorted(stop, key=ROLES.index)


def test_one_way_runs_keep_the_test_for_every_flow():
    assert flow_tests(S, 3, False) == (S, S, S)
    assert not any(reversed_flow(3, False, f) for f in range(3))
    assert [TestConfig(test=TestName.UDP_RR, flows=2).flow_test(f) for f in range(2)] == [TestName.UDP_RR] * 2


@pytest.mark.parametrize("test, reverse", [(S, M), (M, S)])
def test_bidir_runs_the_reverse_on_the_second_half(test, reverse):
    cfg = TestConfig(test=test, flows=4, bidir=True)
    assert [cfg.flow_test(f) for f in range(4)] == [test, test, reverse, reverse]
    assert [cfg.reversed_flow(f) for f in range(4)] == [False, False, True, True]
    assert [flow_def(cfg, f) for f in range(4)] == [TESTS[test]] * 2 + [TESTS[reverse]] * 2


def test_flow_test_refuses_a_test_without_reverse():
    with pytest.raises(ValueError, match="--bidir: TCP_RR has no reverse test"):
        flow_test(TestName.TCP_RR, 2, True, 1)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"test": TestName.TCP_RR}, r"--bidir: runs TCP_STREAM, TCP_MAERTS both ways, not TCP_RR \(a request/resp"),
        ({"test": TestName.TCP_CRR}, "not TCP_CRR"),
        ({"test": TestName.UDP_RR}, "not UDP_RR"),
        ({"test": TestName.UDP_STREAM}, r"--bidir: runs TCP_STREAM, TCP_MAERTS both ways, not UDP_STREAM$"),
        ({"test": TestName.TCP_SENDFILE}, "not TCP_SENDFILE"),
        ({"flows": 3}, "--bidir: 3 flows; as many each way makes an even number"),
        ({"flows": FLOWS[1] + 2}, "--bidir: -P 129 per direction makes 258 flows; at most 128 per direction"),
    ],
)
def test_test_config_refuses_what_cannot_run_both_ways(fields, message):
    with pytest.raises(ValueError, match=message):
        TestConfig(**({"test": S, "flows": 2, "bidir": True} | fields))


def test_the_flows_bound_holds_for_both_directions_together():
    assert TestConfig(test=S, flows=FLOWS[1], bidir=True).flows == FLOWS[1]
    TestConfig(test=S, flows=FLOWS[1])  # one way: the same bound


def _snap(busy: float, idle: float) -> cpu.CpuSnapshot:
    return [[busy if f == "user" else idle if f == "idle" else 0.0 for f in cpu.FIELDS]]


def _raw(flows: int, moved: dict[tuple[int, str, int], int]) -> RawRun:
    """Two samples one second apart; counter (flow, role, slot) grows by ``moved`` bytes."""
    last = [0] * len(counter_names(flows))
    for (flow, role, slot), n in moved.items():
        last[slot_index(flow, role, slot)] = n
    return RawRun([Sample(0.0, _snap(1, 1), [0] * len(last)), Sample(1.0, _snap(1.5, 1.5), last)], [], [])


def _moved(test: TestName) -> dict[tuple[int, str, int], int]:
    """Four flows of ``test --bidir -P 2``: each flow's sender sent and its receiver received its bytes.

    Forward flows move 1 and 2 MB, reverse ones 3 and 4 MB; only each flow's receiving end has
    bytes_received, so counting a flow at the wrong end reads 0."""
    cfg = TestConfig(test=test, flows=4, bidir=True)
    moved = {}
    for flow in range(4):
        receiver = TRAITS[cfg.flow_test(flow)].work.role
        sender = "server" if receiver == "client" else "client"
        moved[(flow, receiver, BYTES_RECEIVED)] = moved[(flow, sender, BYTES_SENT)] = (flow + 1) * 10**6
    return moved


@pytest.mark.parametrize("test", [S, M])
def test_each_flow_counts_at_its_own_receiver_and_the_directions_sum(test):
    raw = _raw(4, _moved(test))
    m = derive(test, 4, raw, bidir=True)
    assert [f.rate for f in m.flows] == pytest.approx([8.0, 16.0, 24.0, 32.0])
    assert m.forward_mbps == pytest.approx(24.0) and m.reverse_mbps == pytest.approx(56.0)
    assert m.throughput_mbps == pytest.approx(m.forward_mbps + m.reverse_mbps)
    assert m.send_throughput_mbps == pytest.approx(80.0)
    # Service demand divides the CPU by every byte moved, both ways.
    assert m.service_demand_us_per_kb == pytest.approx(cpu.service_demand_us(cpu.delta(*_cpu(raw)), 10**7 / 1024))
    assert figure(test, "rate", m) == m.throughput_mbps  # what compare's paired ratios take
    names = counter_names(4)
    a, b = raw.samples
    assert flow_rates(test, 4, a, b, names, bidir=True) == pytest.approx([8.0, 16.0, 24.0, 32.0])
    assert series(test, 4, raw.samples, names, bidir=True)[0]["rate"] == pytest.approx(80.0)


def _cpu(raw: RawRun) -> tuple[cpu.CpuSnapshot, cpu.CpuSnapshot, float]:
    return raw.samples[0].cpu, raw.samples[-1].cpu, 1.0


def test_a_one_way_reading_of_bidir_counters_misses_the_reverse_flows():
    # The control: without bidir, every flow is counted at TCP_STREAM's receiver (the server).
    m = derive(S, 4, _raw(4, _moved(S)))
    assert m.throughput_mbps == pytest.approx(24.0)
    assert m.forward_mbps is None and m.reverse_mbps is None


def _bidir_run() -> RunResult:
    cfg = TestConfig(test=S, flows=2, bidir=True)
    metrics = derive(
        S, 2, _raw(2, {(0, "server", BYTES_RECEIVED): 10**6, (1, "client", BYTES_RECEIVED): 3 * 10**6}), bidir=True
    )
    return RunResult(
        topology="veth",
        topology_source="topologies/veth.toml",
        config=cfg,
        status=RunStatus.OK,
        metrics=metrics,
        iterations=(Iteration(metrics=metrics, endpoints=[], raw={}),),
    )


def test_a_bidir_result_keeps_its_keys_and_validates(tmp_path):
    run = _bidir_run()
    stored = run_to_json(run)
    assert stored["config"]["bidir"] is True and stored["config"]["flows"] == 2
    assert stored["metrics"]["forward_mbps"] == pytest.approx(8.0)
    assert stored["metrics"]["reverse_mbps"] == pytest.approx(24.0)
    loaded = run_from_json(stored)
    assert loaded.config == run.config and loaded.metrics == run.metrics
    # The metrics against the schema's metrics; the config inside a whole stored file (a run without figures).
    jsonschema.validate(stored["metrics"], {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/metrics"})
    results = ResultFile(path=tmp_path / "r.json", command=["vdevperf", "run"])
    results.add(dataclasses.replace(run, status=RunStatus.UNSUPPORTED, reason="x", metrics=None, iterations=()))
    document = load(tmp_path / "r.json")
    jsonschema.validate(document, SCHEMA)
    assert document["runs"][0]["config"]["bidir"] is True


def test_a_one_way_result_has_none_of_the_keys():
    run = _bidir_run()
    one_way = dataclasses.replace(
        run,
        config=dataclasses.replace(run.config, bidir=False),
        metrics=dataclasses.replace(run.metrics, forward_mbps=None, reverse_mbps=None),
    )
    stored = run_to_json(one_way)
    assert "bidir" not in stored["config"]
    assert not {"forward_mbps", "reverse_mbps"} & set(stored["metrics"])
    assert run_from_json(stored).config.bidir is False


def test_the_table_shows_each_direction_only_for_bidir_runs():
    run = _bidir_run()
    header, _, line = run_table([run]).splitlines()[:3]
    assert header.split()[3:5] == ["Forward", "Reverse"]
    assert line.split()[2:5] == ["32.00", "8.00", "24.00"]
    plain = dataclasses.replace(run, metrics=dataclasses.replace(run.metrics, forward_mbps=None, reverse_mbps=None))
    assert "Forward" not in run_table([plain]) and "Reverse" not in run_table([plain])


def test_remote_runs_refuse_bidir_before_connecting(tmp_path):
    # Port 9 on a TEST-NET address: a connection attempt would fail differently (or hang), not with this.
    target = RemoteTarget("192.0.2.1", 9, b"x" * 32)
    results = ResultFile(path=tmp_path / "r.json", command=["vdevperf", "run"])
    with pytest.raises(VdevperfError, match="--bidir: not carried to a vdevperf server yet"):
        bench.run_remote(target, [TestConfig(test=S, flows=2, bidir=True)], results)
