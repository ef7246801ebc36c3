"""The test registry: every test's traits complete and consistent, its loops present, the schema in step."""

import dataclasses
import json
from pathlib import Path

import pytest

from vdevperf.counters import ROLES, SLOTS, counter_names, slot_index
from vdevperf.load.tests import TESTS
from vdevperf.measure import cpu, histogram
from vdevperf.measure.metrics import derive, figure, rate_key
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import Metrics
from vdevperf.traits import LATENCY_METRICS, TRAITS, UNITS, Kind, Protocol, TestName

SCHEMA = json.loads((Path(__file__).parents[2] / "vdevperf" / "schema" / "result.schema.json").read_text())
METRIC_FIELDS = {f.name for f in dataclasses.fields(Metrics)}


def _test_enums(node: object, path: str = "") -> dict[str, list[str]]:
    """Every ``"test": {"enum": [...]}`` in the schema, by where it is."""
    found = {}
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "test" and isinstance(value, dict) and "enum" in value:
                found[f"{path}/{key}"] = value["enum"]
            found |= _test_enums(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found |= _test_enums(value, f"{path}/{i}")
    return found


def test_the_result_schema_lists_exactly_the_registered_tests():
    enums = _test_enums(SCHEMA)
    assert len(enums) >= 2  # a run's test and its config's test
    for where, names in enums.items():
        assert names == [str(t) for t in TestName], where


def test_every_test_has_traits_and_loops():
    assert list(TRAITS) == list(TestName)
    assert list(TESTS) == list(TestName)  # the loop modules' LOOPS cover every test, in order
    for name, tdef in TESTS.items():
        assert tdef.traits is TRAITS[name] and tdef.name is name
        assert callable(tdef.client_loop) and callable(tdef.server_loop)


@pytest.mark.parametrize("test", list(TestName))
def test_traits_are_consistent(test):
    t = TRAITS[test]
    assert t.name is test
    assert t.work.role in ROLES and 0 <= t.work.slot < len(SLOTS)
    assert t.stop and set(t.stop) <= set(ROLES)
    assert set(t.metrics) <= METRIC_FIELDS and len(set(t.metrics)) == len(t.metrics)
    assert {t.units.rate_field, t.units.demand_field, t.units.remote_demand_field} <= METRIC_FIELDS
    assert t.units is UNITS[t.kind]
    assert {t.units.rate_field, t.units.demand_field} <= set(t.metrics)
    # Latency is recorded exactly when the test reports it.
    assert t.latency == (set(LATENCY_METRICS) <= set(t.metrics))
    # Work is counted where netperf counts it: bytes received for stream, transactions for RR.
    assert SLOTS[t.work.slot] == ("bytes_received" if t.kind is Kind.STREAM else "transactions")
    assert t.default_send_size >= 1
    if t.protocol is Protocol.UDP:
        assert "server" in t.stop  # a UDP server sees no EOF
        if t.kind is Kind.STREAM:
            assert t.default_send_size <= 1472  # one message fits a 1500-byte MTU unfragmented
    if t.per_connection:
        assert t.kind is Kind.RR and t.protocol is Protocol.TCP
    # The enum's properties read this table.
    assert test.is_stream == (t.kind is Kind.STREAM) and test.is_udp == (t.protocol is Protocol.UDP)


def test_traits_refuse_an_unknown_role():
    t = TRAITS[TestName.TCP_STREAM]
    with pytest.raises(ValueError, match="roles"):
        dataclasses.replace(t, stop=("client", "sender"))
    with pytest.raises(ValueError, match="roles"):
        dataclasses.replace(t, stop=("client", "client"))


def _snap(busy: float, idle: float) -> cpu.CpuSnapshot:
    return [[busy if f == "user" else idle if f == "idle" else 0.0 for f in cpu.FIELDS]]


@pytest.mark.parametrize("test", list(TestName))
def test_derive_fills_exactly_the_metrics_a_test_declares(test):
    """Counters grow everywhere; only the declared figures (and the common ones) come out."""
    t = TRAITS[test]
    names = counter_names(1)
    first, last = [0] * len(names), [0] * len(names)
    for role in ROLES:
        for slot in range(len(SLOTS)):
            last[slot_index(0, role, slot)] = 1000
    hist = {histogram.index(50_000): 10}
    raw = RawRun([Sample(0.0, _snap(1, 1), first), Sample(1.0, _snap(1.5, 1.5), last)], [], [hist])
    m = derive(test, 1, raw)
    common = {"elapsed_s", "cpu_util_pct", "softirq_pct", "steal_pct", "flows", "min_flow_rate", "max_flow_rate"}
    common |= {"jain_index"}
    filled = {f for f in METRIC_FIELDS if getattr(m, f) not in (None, ())}
    assert filled - common == set(t.metrics)
    assert rate_key(test) == t.units.rate_field
    assert figure(test, "rate", m) == getattr(m, t.units.rate_field)
    assert figure(test, "service_demand", m) == getattr(m, t.units.demand_field)
