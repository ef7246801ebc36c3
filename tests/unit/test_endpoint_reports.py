"""Typed endpoint reports: the result's and the wire's JSON shapes, and their way back (no root needed)."""

from vdevperf.counters import SLOTS
from vdevperf.measure.endpoints import NOT_READ, EndpointReport, Finished, Ready, SocketFacts
from vdevperf.remote import protocol

TCP = SocketFacts(sndbuf_bytes=46080, rcvbuf_bytes=131072, congestion_control="cubic")
UDP = SocketFacts(sndbuf_bytes=212992, rcvbuf_bytes=212992)
COUNTS = tuple(range(10, 10 + len(SLOTS)))


def test_a_local_endpoint_reports_its_migrations_before_the_cpus_it_was_seen_on():
    report = EndpointReport(
        flow=1,
        role="server",
        ready=Ready(pid=42, requested_cpu=1, affinity=(1,), socket=TCP),
        finished=Finished(observed_cpus={10: 1, 1: 5, 2: 3}, final_counters=COUNTS, migrations=0),
    )
    doc = report.to_json()
    assert doc == {
        "flow": 1,
        "role": "server",
        "pid": 42,
        "placement": {"requested_cpu": 1, "affinity": [1], "migrations": 0, "observed_cpus": {"1": 5, "2": 3, "10": 1}},
        "socket": {"sndbuf_bytes": 46080, "rcvbuf_bytes": 131072, "congestion_control": "cubic"},
        "final_counters": dict(zip(SLOTS, COUNTS, strict=True)),
    }
    assert list(doc["placement"]) == ["requested_cpu", "affinity", "migrations", "observed_cpus"]
    assert list(doc["placement"]["observed_cpus"]) == ["1", "2", "10"]  # by CPU number, not as text


def test_migrations_the_kernel_does_not_give_are_null_and_unread_ones_absent():
    ready = Ready(pid=7, requested_cpu=None, affinity=(0, 1), socket=UDP)
    unknown = EndpointReport(0, "client", ready, Finished({0: 2}, COUNTS, migrations=None))
    remote = EndpointReport(0, "server", ready, Finished({0: 2}, COUNTS))
    assert unknown.to_json()["placement"]["migrations"] is None
    assert "migrations" not in remote.to_json()["placement"] and remote.migrations is NOT_READ
    assert "congestion_control" not in remote.to_json()["socket"]


def test_the_wire_forms_pass_the_protocol_and_come_back_equal():
    ready = Ready(pid=42, requested_cpu=None, affinity=(0, 1), socket=TCP)
    finished = Finished({0: 3, 1: 1}, COUNTS)
    protocol.MESSAGES["started"].check({"endpoints": [ready.to_json()]}, "started")
    protocol.MESSAGES["stopped"].check({"endpoints": [finished.to_json()]}, "stopped")
    assert Ready.from_json(ready.to_json()) == ready
    assert Finished.from_json(finished.to_json()) == finished


def test_an_endpoints_ready_message_becomes_its_ready_report():
    message = {"event": "ready", "placement": {"requested_cpu": 0, "affinity": [0]}, "socket": UDP.to_json()}
    assert Ready.from_message(99, message) == Ready(99, 0, (0,), UDP)
