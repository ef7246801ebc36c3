"""--burst: the model's checks, and burst_request_loop over real socket pairs against a scripted server:
responses split and merged across reads (TCP), and a lost window refilled after the timeout (UDP)."""

from __future__ import annotations

import signal
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from vdevperf.counters import BYTES_SENT, ERRORS, SLOTS, TRANSACTIONS
from vdevperf.errors import LoadError
from vdevperf.load import rr
from vdevperf.load.context import LoopContext, StopLoad
from vdevperf.measure.histogram import BUCKETS
from vdevperf.model import RunResult, RunStatus, TestConfig, TestName
from vdevperf.results import run_from_json, run_to_json


@pytest.mark.parametrize("test", [TestName.TCP_CRR, TestName.TCP_STREAM, TestName.UDP_STREAM])
def test_burst_is_refused_where_no_transactions_can_overlap(test):
    with pytest.raises(ValueError, match=f"--burst: transactions in flight are for TCP_RR, UDP_RR, not {test}"):
        TestConfig(test=test, send_size=1472, burst=2)
    TestConfig(test=test, send_size=1472, burst=1)


@pytest.mark.parametrize("burst", [0, 1025])
def test_burst_is_bounded(burst):
    with pytest.raises(ValueError, match="--burst: .* is outside 1-1024 transactions"):
        TestConfig(test=TestName.TCP_RR, burst=burst)


def test_burst_is_refused_with_a_paced_rate():
    with pytest.raises(ValueError, match="--burst: not with --rate"):
        TestConfig(test=TestName.TCP_RR, burst=2, rate_tps=1000)


def test_the_responses_in_flight_must_fit_the_memory_cap():
    with pytest.raises(ValueError, match="--burst/-r: 2 flows of 1024 responses"):
        TestConfig(test=TestName.TCP_RR, burst=1024, response_size=1024**2, flows=2)


def _ctx(sock: socket.socket, cfg: TestConfig) -> tuple[LoopContext, memoryview, memoryview]:
    slots = memoryview(bytearray(8 * len(SLOTS))).cast("q")
    hist = memoryview(bytearray(8 * BUCKETS)).cast("q")
    return LoopContext(sock, cfg, slots, hist), slots, hist


def test_tcp_responses_split_and_merged_across_reads_count_once_each():
    """The server answers in chunks of 1 to 9 bytes of 4-byte responses: a read holds part of one,
    or the end of one and more; every whole response is one transaction, no more."""
    ours, theirs = socket.socketpair()
    cfg = TestConfig(test=TestName.TCP_RR, request_size=2, response_size=4, burst=3)
    total = 30 * cfg.response_size

    def serve() -> None:
        asked = sent = i = 0
        chunks = (1, 6, 4, 9, 2, 3, 7)
        while sent < total:
            chunk = min(chunks[i % len(chunks)], total - sent)
            i += 1
            # Answer only what was asked: 3 requests stay in flight, so 9 bytes are always owed.
            while asked // cfg.request_size * cfg.response_size - sent < chunk:
                asked += len(theirs.recv(64))
            theirs.sendall(bytes(chunk))
            sent += chunk
        theirs.shutdown(socket.SHUT_WR)  # EOF for the client; its last requests still land

    server = threading.Thread(target=serve)
    server.start()
    ctx, slots, hist = _ctx(ours, cfg)
    with ours, theirs, pytest.raises(LoadError, match="server closed the connection mid-test"):
        rr.burst_request_loop(ctx)
    server.join()
    assert slots[TRANSACTIONS] == 30 and sum(hist) == 30
    assert slots[BYTES_SENT] == 30 * cfg.request_size


@pytest.fixture
def alarm() -> Iterator[None]:
    """SIGALRM ends a loop as SIGUSR1 does in an endpoint: StopLoad."""

    def stop(signum: int, frame: object) -> None:
        raise StopLoad

    previous = signal.signal(signal.SIGALRM, stop)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_a_lost_udp_window_is_counted_and_sent_again(alarm):
    """Requests 6-9 are dropped: the whole window of 4 is then lost; after the receive timeout it is
    counted in errors and a new window goes out, which the server answers again."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
    theirs.settimeout(0.1)
    cfg = TestConfig(test=TestName.UDP_RR, burst=4)
    done = threading.Event()

    def serve() -> None:
        n = 0
        while not done.is_set():
            try:
                theirs.recv(64)
            except TimeoutError:
                continue
            if not 6 <= n <= 9:
                theirs.send(b"r")
            n += 1

    server = threading.Thread(target=serve)
    server.start()
    ctx, slots, hist = _ctx(ours, cfg)
    signal.setitimer(signal.ITIMER_REAL, 0.4)
    try:
        with pytest.raises(StopLoad):
            rr.burst_request_loop(ctx)
    finally:
        done.set()
        server.join()
        ours.close()
        theirs.close()
    assert slots[ERRORS] == 4
    assert slots[TRANSACTIONS] > 100 and sum(hist) == slots[TRANSACTIONS]


def test_the_burst_is_stored_only_when_asked():
    def run(cfg: TestConfig) -> RunResult:
        return RunResult("veth", "bundled", cfg, RunStatus.UNSUPPORTED, reason="no veth here")

    assert "burst" not in run_to_json(run(TestConfig(test=TestName.TCP_RR)))["config"]
    doc = run_to_json(run(TestConfig(test=TestName.TCP_RR, burst=8)))
    assert doc["config"]["burst"] == 8
    assert run_from_json(doc).config.burst == 8
