"""Each netperf test's traits as data: what it measures, in which units, and how its load behaves.

Nothing is inferred from a test's name: a test is stream or request/response,
over TCP or UDP, counts its work at one endpoint's counter, and reports the
figures and units that follow from that, because its entry here says so
(flent declares units per data set the same way). The traits sit at the
bottom, below measure/ and load/: metrics, reports and the load generator all
read them, and load/tests.py adds each test's loops.

Adding a test: a TestName member and its Traits entry here, its loops in
load/ (LOOPS of stream.py or rr.py), its name in schema/result.schema.json.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vdevperf.counters import BYTES_RECEIVED, ROLES, TRANSACTIONS


class TestName(enum.StrEnum):
    """netperf's test names."""

    __test__ = False  # not a pytest test class

    TCP_STREAM = "TCP_STREAM"
    TCP_MAERTS = "TCP_MAERTS"
    TCP_SENDFILE = "TCP_SENDFILE"
    UDP_STREAM = "UDP_STREAM"
    TCP_RR = "TCP_RR"
    TCP_CRR = "TCP_CRR"
    UDP_RR = "UDP_RR"

    @property
    def traits(self) -> Traits:
        """This test's entry in TRAITS."""
        return TRAITS[self]

    @property
    def is_stream(self) -> bool:
        """True for bulk-transfer tests, measured in 10^6 bits/s."""
        return TRAITS[self].kind is Kind.STREAM

    @property
    def is_udp(self) -> bool:
        """True for tests over UDP."""
        return TRAITS[self].protocol is Protocol.UDP


class Kind(enum.StrEnum):
    """What a test measures: bulk transfer (bytes) or request/response (transactions)."""

    STREAM = "stream"
    RR = "rr"


class Protocol(enum.StrEnum):
    """The transport a test's data travels over."""

    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True)
class Units:
    """How a test's counted work becomes its headline figures, in netperf's units.

    ``rate_field`` and the demand fields name Metrics fields; ``per_demand_unit`` is how
    much counted work makes one unit of service demand (1024 bytes a KB, one transaction).
    """

    rate: str
    service_demand: str
    rate_field: str
    demand_field: str
    remote_demand_field: str
    per_demand_unit: int


STREAM_UNITS = Units(
    rate="10^6bits/s",
    service_demand="us/KB",
    rate_field="throughput_mbps",
    demand_field="service_demand_us_per_kb",
    remote_demand_field="remote_service_demand_us_per_kb",
    per_demand_unit=1024,
)
RR_UNITS = Units(
    rate="Trans/s",
    service_demand="us/Tr",
    rate_field="transactions_per_s",
    demand_field="service_demand_us_per_tr",
    remote_demand_field="remote_service_demand_us_per_tr",
    per_demand_unit=1,
)
UNITS = {Kind.STREAM: STREAM_UNITS, Kind.RR: RR_UNITS}

# Metrics fields a test of each shape fills beyond those every run has (elapsed time, CPU).
LATENCY_METRICS = tuple(
    f"{key}_latency_us" for key in ("mean", "min", "p50", "p90", "p99", "p99_9", "max")
)  # measure.histogram.summary_us's keys
STREAM_METRICS = ("throughput_mbps", "service_demand_us_per_kb", "send_throughput_mbps")
UDP_STREAM_METRICS = (*STREAM_METRICS, "messages_sent", "messages_received", "loss_pct", "jitter_us")
RR_METRICS = ("transactions_per_s", "service_demand_us_per_tr", *LATENCY_METRICS)
UDP_RR_METRICS = (*RR_METRICS, "jitter_us")


@dataclass(frozen=True)
class Work:
    """Where a test's unit of work is counted: one role's counter (a counters.SLOTS index)."""

    role: str
    slot: int


@dataclass(frozen=True)
class Traits:
    """One test as data: shape, transport, where work is counted, what it reports, how it ends."""

    __test__ = False  # not a pytest test class

    name: TestName
    kind: Kind
    protocol: Protocol
    # Stream tests count bytes at the receiver, RR tests completed transactions at the client,
    # as netperf does.
    work: Work
    # The Metrics fields this test fills beyond the ones every run has.
    metrics: tuple[str, ...]
    # Roles that SIGUSR1 stops at the end of the window, in order; the others end at EOF.
    stop: tuple[str, ...]
    # TCP_CRR: the client connects per transaction and the server keeps its listener.
    per_connection: bool = False
    # RR tests: the client records every transaction's latency.
    latency: bool = False
    # -m when the user gives none: UDP's is a message that fits a 1500-byte MTU unfragmented.
    default_send_size: int = 128 * 1024
    # -Z: its sender is send_loop over TCP, which can send with MSG_ZEROCOPY.
    zerocopy: bool = False
    # Its load can be paced: a stream test's sender at -b bits/s, an RR client at --rate transactions/s.
    pacing: bool = False
    # --bidir: the test whose flows move data the other way over the same kind of connection (a
    # TCP_STREAM flow's reverse is a TCP_MAERTS flow); None: the test cannot run both ways.
    reverse: TestName | None = None
    # Each flow keeps one TCP connection for the whole window, whose TCP_INFO the sampler reads
    # (measure.tcpinfo); not TCP_CRR, whose connections live for one transaction.
    tcp_info: bool = False
    # --burst: its client can keep several transactions in flight on one connection (burst_request_loop).
    burst: bool = False

    def __post_init__(self) -> None:
        roles = (self.work.role, *self.stop)
        if any(role not in ROLES for role in roles) or len(set(self.stop)) != len(self.stop):
            raise ValueError(f"{self.name}: roles must be distinct ones of {', '.join(ROLES)}")
        if self.tcp_info and (self.protocol is not Protocol.TCP or self.per_connection):
            raise ValueError(f"{self.name}: TCP_INFO needs one TCP connection per flow for the whole window")

    @property
    def units(self) -> Units:
        """Rate and service-demand units, and the Metrics fields that hold them."""
        return UNITS[self.kind]

    @property
    def stream(self) -> bool:
        """True for bulk-transfer tests."""
        return self.kind is Kind.STREAM

    @property
    def udp(self) -> bool:
        """True for tests over UDP."""
        return self.protocol is Protocol.UDP

    @property
    def senders(self) -> tuple[str, ...]:
        """The roles that send data: a stream test's sender (the one not counting received bytes), both
        ends of an RR test."""
        if self.stream:
            return tuple(role for role in ROLES if role != self.work.role)
        return ROLES


_AT_SERVER, _AT_CLIENT = Work("server", BYTES_RECEIVED), Work("client", TRANSACTIONS)
_AT_CLIENT_BYTES = Work("client", BYTES_RECEIVED)

TRAITS: dict[TestName, Traits] = {
    t.name: t
    for t in (
        Traits(
            TestName.TCP_STREAM,
            Kind.STREAM,
            Protocol.TCP,
            _AT_SERVER,
            STREAM_METRICS,
            ("client",),
            zerocopy=True,
            pacing=True,
            reverse=TestName.TCP_MAERTS,
            tcp_info=True,
        ),
        Traits(
            TestName.TCP_MAERTS,
            Kind.STREAM,
            Protocol.TCP,
            _AT_CLIENT_BYTES,
            STREAM_METRICS,
            ("server",),
            zerocopy=True,
            pacing=True,
            reverse=TestName.TCP_STREAM,
            tcp_info=True,
        ),
        Traits(
            TestName.TCP_SENDFILE, Kind.STREAM, Protocol.TCP, _AT_SERVER, STREAM_METRICS, ("client",), tcp_info=True
        ),
        Traits(
            TestName.UDP_STREAM,
            Kind.STREAM,
            Protocol.UDP,
            _AT_SERVER,
            UDP_STREAM_METRICS,
            ("client", "server"),
            default_send_size=1472,
            pacing=True,
        ),
        Traits(
            TestName.TCP_RR,
            Kind.RR,
            Protocol.TCP,
            _AT_CLIENT,
            RR_METRICS,
            ("client",),
            latency=True,
            pacing=True,
            tcp_info=True,
            burst=True,
        ),
        Traits(
            TestName.TCP_CRR,
            Kind.RR,
            Protocol.TCP,
            _AT_CLIENT,
            RR_METRICS,
            ("client", "server"),
            per_connection=True,
            latency=True,
        ),
        Traits(
            TestName.UDP_RR,
            Kind.RR,
            Protocol.UDP,
            _AT_CLIENT,
            UDP_RR_METRICS,
            ("client", "server"),
            latency=True,
            pacing=True,
            burst=True,
        ),
    )
}


def reversed_flow(flows: int, bidir: bool, flow: int) -> bool:
    """True if flow ``flow`` of ``flows`` runs the other way: with --bidir, the second half of the flows."""
    return bidir and flow >= flows // 2


def flow_test(test: TestName, flows: int, bidir: bool, flow: int) -> TestName:
    """The test flow ``flow`` of ``flows`` runs: ``test``, or with --bidir its reverse for the second half.

    The one place a flow's direction is decided: which loop each of its ends runs, which role
    SIGUSR1 stops and where its work is counted all follow from the test this returns.
    """
    if not reversed_flow(flows, bidir, flow):
        return test
    reverse = TRAITS[test].reverse
    if reverse is None:
        raise ValueError(f"--bidir: {test} has no reverse test")
    return reverse


def flow_tests(test: TestName, flows: int, bidir: bool) -> tuple[TestName, ...]:
    """Per flow, the test it runs (flow_test of each)."""
    return tuple(flow_test(test, flows, bidir, flow) for flow in range(flows))
