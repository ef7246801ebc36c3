"""The tests as data: for each netperf test, which loop runs on each side and how it is measured.

Adding a test is one entry here (and its loops): the runner, metrics and
reports read everything they need from the TestDef.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vdevperf.load import rr, stream
from vdevperf.load.context import BYTES_RECEIVED, TRANSACTIONS, LoopContext
from vdevperf.model import TestName

Loop = Callable[[LoopContext], None]


@dataclass(frozen=True)
class TestDef:
    """How one test runs and where its unit of work is counted."""

    __test__ = False  # not a pytest test class

    name: TestName
    client_loop: Loop
    server_loop: Loop
    # The unit of work: (role, slot). Stream tests count bytes at the receiver,
    # RR tests completed transactions at the client, as netperf does.
    work: tuple[str, int]
    # Roles that SIGUSR1 stops at the end of the window, in order; the others end at EOF.
    stop: tuple[str, ...]
    # TCP_CRR: the client connects per transaction and the server keeps its listener.
    per_connection: bool = False
    # RR tests: the client records every transaction's latency.
    latency: bool = False
    # -m when the user gives none: UDP's is a message that fits a 1500-byte MTU unfragmented.
    default_send_size: int = 128 * 1024


TESTS: dict[TestName, TestDef] = {
    t.name: t
    for t in (
        TestDef(TestName.TCP_STREAM, stream.send_loop, stream.recv_loop, ("server", BYTES_RECEIVED), ("client",)),
        TestDef(TestName.TCP_MAERTS, stream.recv_loop, stream.send_loop, ("client", BYTES_RECEIVED), ("server",)),
        TestDef(
            TestName.UDP_STREAM,
            stream.send_loop,
            stream.recv_loop,
            ("server", BYTES_RECEIVED),
            ("client", "server"),
            default_send_size=1472,
        ),
        TestDef(
            TestName.TCP_RR, rr.request_loop, rr.response_loop, ("client", TRANSACTIONS), ("client",), latency=True
        ),
        TestDef(
            TestName.TCP_CRR,
            rr.crr_request_loop,
            rr.crr_response_loop,
            ("client", TRANSACTIONS),
            ("client", "server"),
            per_connection=True,
            latency=True,
        ),
        TestDef(
            TestName.UDP_RR,
            rr.request_loop,
            rr.udp_response_loop,
            ("client", TRANSACTIONS),
            ("client", "server"),
            latency=True,
        ),
    )
}
