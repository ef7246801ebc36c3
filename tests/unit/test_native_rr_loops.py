"""The native (C) RR loops over real sockets, each end in a forked process (a C loop keeps the GIL while it
blocks, as an endpoint does, so a peer cannot be a thread): counts, histogram, the stop by SIGUSR1, the UDP
loss handling and a peer's close, and the same figures as the Python loops where the script fixes them."""

from __future__ import annotations

import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator

import pytest

from vdevperf.counters import (
    BYTES_RECEIVED,
    BYTES_SENT,
    CONNECTIONS,
    ERRORS,
    JITTER_SUM_NS,
    SLOTS,
    TRANSACTIONS,
)
from vdevperf.errors import LoadError
from vdevperf.load import rr
from vdevperf.load.context import LoopContext, StopLoad
from vdevperf.measure import histogram
from vdevperf.measure.histogram import BUCKETS, sparse, summary_us
from vdevperf.model import TestConfig, TestName

pytestmark = pytest.mark.skipif(rr._RR is None, reason="vdevperf.load._native_rr not built")

STOPPED = 7  # a child's exit status when its loop ended by StopLoad


class Shared:
    """Counter slots and a histogram in shared memory, as an endpoint's: a forked loop writes, the test reads."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, 8 * (len(SLOTS) + BUCKETS))
        view = memoryview(self._map).cast("q")
        self.slots, self.hist = view[: len(SLOTS)], view[len(SLOTS) :]

    def ctx(self, sock: socket.socket | None, cfg: TestConfig, native: bool = True) -> LoopContext:
        return LoopContext(sock, cfg, self.slots, self.hist, native=native)

    def in_histogram(self) -> int:
        return sum(self.hist)


def _raise_stop(signum: int, frame: object) -> None:
    raise StopLoad


def fork(body: Callable[[], None], *others: socket.socket) -> int:
    """Run ``body`` in a child with an endpoint's SIGUSR1 handler; exit 0, STOPPED on StopLoad, 1 on an error.

    The child first closes ``others`` (the peer's ends): a copy kept open would hide the peer's close."""
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        for sock in others:
            sock.close()
        signal.signal(signal.SIGUSR1, _raise_stop)
        body()
        status = 0
    except StopLoad:
        status = STOPPED
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def reap(pid: int, timeout_s: float = 10.0) -> int:
    """A child's exit status; killed if it outlives ``timeout_s`` (a loop that missed its stop)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not end")


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair with TCP_NODELAY (as -D), client first."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, server


@pytest.mark.parametrize(("req", "resp"), [(1, 1), (3000, 200_000)])
def test_tcp_rr_counts_each_transaction_once_and_stops_on_sigusr1(req, resp):
    """200 kB responses arrive in several reads (the partial-read path); the client stops on SIGUSR1
    at any point of its loop, the server at the client's close. Latencies are the time between two
    completions, so they add up to the client's running time."""
    cfg = TestConfig(test=TestName.TCP_RR, request_size=req, response_size=resp)
    client_sock, server_sock = tcp_pair()
    ours, theirs = Shared(), Shared()
    server = fork(lambda: rr.response_loop(theirs.ctx(server_sock, cfg)), client_sock)
    started = time.monotonic()
    client = fork(lambda: rr.request_loop(ours.ctx(client_sock, cfg)), server_sock)
    client_sock.close()
    server_sock.close()
    time.sleep(0.4)
    os.kill(client, signal.SIGUSR1)
    assert reap(client) == STOPPED
    elapsed_s = time.monotonic() - started
    assert reap(server) == 0  # EOF after the client's close (or a reset): the normal end
    done = ours.slots[TRANSACTIONS]
    assert done > 100 and ours.in_histogram() == done
    assert ours.slots[BYTES_SENT] == done * req and ours.slots[BYTES_RECEIVED] == done * resp
    # The server answered every request the client sent: the counted ones and perhaps the next.
    assert done <= theirs.slots[TRANSACTIONS] <= done + 1
    assert theirs.slots[BYTES_RECEIVED] == theirs.slots[TRANSACTIONS] * req
    assert theirs.slots[BYTES_SENT] == theirs.slots[TRANSACTIONS] * resp
    latency = summary_us(sparse(ours.hist))
    assert 1 <= latency["p50"] <= 50_000
    assert latency["mean"] * done / 1e6 <= elapsed_s * 1.01  # bucket midpoints: within 0.8 %
    assert latency["mean"] * done / 1e6 >= 0.25  # of the ~0.4 s the client ran


def test_a_server_that_stops_answering_is_stopped_by_sigusr1_in_its_read():
    """A blocked read returns EINTR to C: the signal's StopLoad leaves the loop with the totals stored."""
    cfg = TestConfig(test=TestName.TCP_RR, request_size=10, response_size=20)
    client_sock, server_sock = tcp_pair()
    theirs = Shared()
    server = fork(lambda: rr.response_loop(theirs.ctx(server_sock, cfg)), client_sock)
    server_sock.close()
    with client_sock:
        for _ in range(3):
            client_sock.sendall(bytes(cfg.request_size))
            assert len(client_sock.recv(cfg.response_size, socket.MSG_WAITALL)) == cfg.response_size
        time.sleep(0.1)
        os.kill(server, signal.SIGUSR1)
        assert reap(server) == STOPPED
    assert theirs.slots[TRANSACTIONS] == 3 and theirs.slots[BYTES_SENT] == 60 and theirs.slots[BYTES_RECEIVED] == 30


@pytest.mark.parametrize("native", [True, False])
def test_a_server_closing_mid_test_is_a_load_error_with_the_counts_kept(native):
    """The server answers 5 requests and closes: both engines raise the same LoadError, count the same."""
    cfg = TestConfig(test=TestName.TCP_RR, request_size=4, response_size=8)
    client_sock, server_sock = tcp_pair()

    def serve() -> None:
        for _ in range(5):
            server_sock.recv(4, socket.MSG_WAITALL)
            server_sock.sendall(bytes(8))
        server_sock.recv(4, socket.MSG_WAITALL)  # the sixth request, then half a response and the close
        server_sock.sendall(bytes(3))
        server_sock.close()

    server = fork(serve, client_sock)
    server_sock.close()
    ours = Shared()
    with client_sock, pytest.raises(LoadError, match="RR client: server closed the connection mid-test"):
        rr.request_loop(ours.ctx(client_sock, cfg, native))
    assert reap(server) == 0
    assert ours.slots[TRANSACTIONS] == 5 and ours.in_histogram() == 5
    assert ours.slots[BYTES_SENT] == 20 and ours.slots[BYTES_RECEIVED] == 40


@pytest.fixture
def alarm() -> Iterator[None]:
    """SIGALRM ends a loop in this process as SIGUSR1 does in an endpoint: StopLoad."""
    previous = signal.signal(signal.SIGALRM, _raise_stop)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def _lossy_udp_server(sock: socket.socket, dropped: range) -> None:
    """Answer every request with one byte but those numbered in ``dropped``; until the client goes away."""
    sock.settimeout(0.5)
    n = 0
    while True:
        try:
            sock.recv(64)
            if n not in dropped:
                sock.send(b"r")
        except (TimeoutError, ConnectionError):  # the client stopped (and closed)
            return
        n += 1


@pytest.mark.parametrize(
    ("test", "burst", "dropped", "native"),
    [
        # TCP_RR's sizes over a datagram pair: request_loop itself (UDP_RR clients run the burst loop).
        (TestName.TCP_RR, 1, range(6, 7), True),
        (TestName.UDP_RR, 1, range(6, 7), True),
        (TestName.UDP_RR, 4, range(6, 10), True),
        (TestName.UDP_RR, 4, range(6, 10), False),
    ],
)
def test_a_lost_datagram_is_counted_and_the_window_sent_again(alarm, test, burst, dropped, native):
    """The server drops requests: after the receive timeout the lost window counts in errors (1, or the
    whole window of 4) and a new one goes out; a stop in the blocked read still lands."""
    ours_sock, theirs_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
    cfg = TestConfig(test=test, request_size=1, response_size=1, burst=burst)
    server = fork(lambda: _lossy_udp_server(theirs_sock, dropped), ours_sock)
    theirs_sock.close()
    ours = Shared()
    signal.setitimer(signal.ITIMER_REAL, 0.4)
    with ours_sock, pytest.raises(StopLoad):
        rr.request_loop(ours.ctx(ours_sock, cfg, native))
    assert reap(server) == 0
    assert ours.slots[ERRORS] == len(dropped)
    done = ours.slots[TRANSACTIONS]
    assert done > 100 and ours.in_histogram() == done
    assert ours.slots[BYTES_SENT] == done and ours.slots[BYTES_RECEIVED] == done
    assert (ours.slots[JITTER_SUM_NS] > 0) == cfg.measures_jitter


@pytest.mark.parametrize("native", [True, False])
def test_tcp_burst_responses_split_and_merged_across_reads_count_once_each(native):
    """As test_burst_loop's scripted server, for both engines: chunks of 1 to 9 bytes of 4-byte responses;
    every whole response is one transaction, the pairing ring keeps Little's law (N in flight)."""
    cfg = TestConfig(test=TestName.TCP_RR, request_size=2, response_size=4, burst=3)
    ours_sock, theirs_sock = socket.socketpair()
    total = 30 * cfg.response_size

    def serve() -> None:
        asked = sent = i = 0
        chunks = (1, 6, 4, 9, 2, 3, 7)
        while sent < total:
            chunk = min(chunks[i % len(chunks)], total - sent)
            i += 1
            while asked // cfg.request_size * cfg.response_size - sent < chunk:
                asked += len(theirs_sock.recv(64))
            theirs_sock.sendall(bytes(chunk))
            sent += chunk
        theirs_sock.shutdown(socket.SHUT_WR)
        while theirs_sock.recv(64):  # the client's last requests, until it closes
            pass

    server = fork(serve, ours_sock)
    theirs_sock.close()
    ours = Shared()
    with ours_sock, pytest.raises(LoadError, match="server closed the connection mid-test"):
        rr.burst_request_loop(ours.ctx(ours_sock, cfg, native))
    assert reap(server) == 0
    assert ours.slots[TRANSACTIONS] == 30 and ours.in_histogram() == 30
    assert ours.slots[BYTES_SENT] == 60 and ours.slots[BYTES_RECEIVED] == 120
    assert ours.slots[JITTER_SUM_NS] > 0


@pytest.mark.parametrize("native", [True, False])
def test_paced_transactions_keep_the_schedule(alarm, native):
    """--rate 2000/s for 0.3 s: ~600 transactions on both engines, each timed from its due time (so at
    least the round trip, and far below the period on an idle pair)."""
    cfg = TestConfig(test=TestName.TCP_RR, request_size=3, response_size=5, rate_tps=2000)
    ours_sock, theirs_sock = socket.socketpair()
    theirs = Shared()
    server = fork(lambda: rr.response_loop(theirs.ctx(theirs_sock, cfg)), ours_sock)
    theirs_sock.close()
    ours = Shared()
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    with ours_sock, pytest.raises(StopLoad):
        rr.request_loop(ours.ctx(ours_sock, cfg, native))
    assert reap(server) == 0
    done = ours.slots[TRANSACTIONS]
    assert done == pytest.approx(600, rel=0.1) and ours.in_histogram() == done
    assert ours.slots[BYTES_SENT] == 3 * done and ours.slots[BYTES_RECEIVED] == 5 * done
    assert done <= theirs.slots[TRANSACTIONS] <= done + 1
    assert 1 <= summary_us(sparse(ours.hist))["p50"] < 500


def listening(family: int = socket.AF_INET) -> socket.socket:
    """A loopback TCP listener, as a TCP_CRR server endpoint's."""
    listener = socket.socket(family)
    listener.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    listener.listen(128)
    return listener


def crr_client(shared: Shared, cfg: TestConfig, address: tuple[str, int], family: int, native: bool) -> LoopContext:
    """A TCP_CRR client's context as roles.client_role makes it: a connect() for Python, the peer for C."""
    ctx = shared.ctx(None, cfg, native)
    ctx.connect = lambda: socket.create_connection(address)
    ctx.peer = (family, *address)
    return ctx


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
@pytest.mark.parametrize("native", [True, False])
def test_crr_counts_accepts_and_answers_and_stops_on_sigusr1(alarm, native, family):
    """The native TCP_CRR server against either client: one connection per transaction, counted once at
    each end; the client stops on the signal wherever it is in its connect-request-response-close."""
    cfg = TestConfig(test=TestName.TCP_CRR, request_size=5, response_size=7)
    listener = listening(family)
    address = listener.getsockname()[:2]
    theirs, ours = Shared(), Shared()
    server = fork(lambda: rr.crr_response_loop(theirs.ctx(listener, cfg)))
    listener.close()
    ctx = crr_client(ours, cfg, address, family, native)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    with pytest.raises(StopLoad):
        rr.crr_request_loop(ctx)
    time.sleep(0.05)
    os.kill(server, signal.SIGUSR1)
    assert reap(server) == STOPPED
    done = ours.slots[TRANSACTIONS]
    assert done > 20 and ours.in_histogram() == done and ours.slots[CONNECTIONS] == done
    assert ours.slots[BYTES_SENT] == 5 * done and ours.slots[BYTES_RECEIVED] == 7 * done
    answered = theirs.slots[TRANSACTIONS]
    assert done <= answered <= done + 1 and answered <= theirs.slots[CONNECTIONS] <= answered + 1
    assert theirs.slots[BYTES_RECEIVED] == 5 * answered and theirs.slots[BYTES_SENT] == 7 * answered


@pytest.mark.parametrize("native", [True, False])
def test_a_crr_server_closing_before_responding_is_a_load_error_with_the_counts_kept(native):
    """Three whole transactions, then half a response and the close: both engines raise the same LoadError."""
    cfg = TestConfig(test=TestName.TCP_CRR, request_size=4, response_size=8)
    listener = listening()
    address = listener.getsockname()

    def serve() -> None:
        for sent in (8, 8, 8, 3):
            conn, _ = listener.accept()
            with conn:
                conn.recv(4, socket.MSG_WAITALL)
                conn.sendall(bytes(sent))

    server = fork(serve)
    listener.close()
    ours = Shared()
    with pytest.raises(LoadError, match="TCP_CRR client: server closed the connection before responding"):
        rr.crr_request_loop(crr_client(ours, cfg, address, socket.AF_INET, native))
    assert reap(server) == 0
    assert ours.slots[TRANSACTIONS] == 3 and ours.slots[CONNECTIONS] == 3 and ours.in_histogram() == 3
    assert ours.slots[BYTES_SENT] == 12 and ours.slots[BYTES_RECEIVED] == 24


def _client_socket_stats(server_port: int) -> str:
    """ss's view (-i: congestion control; -m: skmem's rb/tb buffer sizes) of the connection to the port."""
    out = subprocess.run(
        ["ss", "-tnim", "state", "established", f"dport = :{server_port}"], capture_output=True, text=True, check=True
    ).stdout
    return " ".join(out.split()[5:])  # past the header


@pytest.mark.parametrize("native", [True, False])
def test_the_crr_client_sets_its_socket_options_on_every_connection(native):
    """-K reno, -s 64K,128K (the kernel doubles them): the client's connection has them, in the C loop as in
    roles.client_role's connect(); checked while the server holds the second connection unanswered."""
    cfg = TestConfig(
        test=TestName.TCP_CRR,
        request_size=1,
        response_size=1,
        congestion_control="reno",
        nodelay=True,
        client_sndbuf=65536,
        client_rcvbuf=131072,
    )
    listener = listening()
    address = listener.getsockname()
    ours = Shared()

    def connect() -> socket.socket:  # what roles.client_role's connect() does
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 131072)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"reno")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(address)
        return sock

    def run() -> None:
        ctx = crr_client(ours, cfg, address, socket.AF_INET, native)
        ctx.connect = connect
        rr.crr_request_loop(ctx)

    client = fork(run, listener)
    try:
        with listener.accept()[0] as first:
            first.recv(1)
            first.sendall(b"\0")
        second, _ = listener.accept()
        with second:
            second.recv(1)  # the client now waits for the response: its socket is there to look at
            stats = _client_socket_stats(address[1])
            assert " reno " in f" {stats} " and "cubic" not in stats and "bbr" not in stats, stats
            assert "tb131072" in stats and "rb262144" in stats, stats
            assert second.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # the server's own: unset
            os.kill(client, signal.SIGUSR1)
            assert reap(client) == STOPPED
            assert second.recv(1) == b""  # the client is gone, its connection closed
    finally:
        listener.close()
    assert ours.slots[TRANSACTIONS] == 1 and ours.slots[CONNECTIONS] == 1 and ours.in_histogram() == 1


def test_the_native_loops_are_named_for_the_engine_record():
    assert set(rr.NATIVE_LOOPS) == {
        rr.request_loop,
        rr.response_loop,
        rr.udp_response_loop,
        rr.crr_request_loop,
        rr.crr_response_loop,
    }


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("options", [{}, {"rate_tps": 1000}, {"burst": 2}], ids=["plain", "rate", "burst"])
def test_native_context_runs_the_c_loop(native, options):
    """LoopContext.native picks the C loop, through every variant request_loop dispatches to: only the C
    loops check the slots' size up front (Python fails at the first count)."""
    cfg = TestConfig(test=TestName.TCP_RR, **options)
    ours_sock, theirs_sock = socket.socketpair()
    short = memoryview(bytearray(8)).cast("q")
    ctx = LoopContext(ours_sock, cfg, short, Shared().hist, native=native)
    theirs_sock.sendall(bytes(cfg.response_size))
    with ours_sock, theirs_sock, pytest.raises(ValueError if native else IndexError):
        rr.request_loop(ctx)


def test_the_c_bucket_is_the_histograms_index():
    """Every power of two and its neighbours up to int64's top, and a spread between."""
    assert rr._RR is not None
    values = {0, 2**63 - 1} | {v for k in range(63) for v in (2**k - 1, 2**k, 2**k + 1)}
    values |= set(range(0, 100_000, 7)) | {v * 104_729 for v in range(1, 10_000)}
    for v in sorted(values):
        assert rr._RR.index(v) == histogram.index(v), v
    assert max(rr._RR.index(v) for v in values) < BUCKETS
