"""The stream loops, both engines, on real local socket pairs: same counts, same stamps, same stop (no root needed).

AF_UNIX socket pairs give the loops real blocking sockets without any network: a stream pair for
TCP's loops, a datagram pair for UDP_STREAM's (send and recv on either kind are the calls the loops
make). The stop is a real signal: SIGALRM with a handler that raises, installed as the endpoints
install theirs (no SA_RESTART), so a blocked send returns EINTR.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from vdevperf.counters import BYTES_RECEIVED, BYTES_SENT, JITTER_SUM_NS, MESSAGES_RECEIVED, MESSAGES_SENT, SLOTS
from vdevperf.load import native, stream
from vdevperf.load.context import LoopContext, StopLoad
from vdevperf.measure import jitter
from vdevperf.model import TestConfig, TestName

ENGINES = ["native", "python"]
UDP = TestConfig(TestName.UDP_STREAM, send_size=64, recv_size=64)
TCP = TestConfig(TestName.TCP_STREAM, send_size=4096, recv_size=4096)


def _ctx(sock: socket.socket, cfg: TestConfig, engine: str) -> LoopContext:
    if engine == "native":
        assert native.module("stream") is not None
    slots = memoryview(bytearray(8 * len(SLOTS))).cast("q")
    return LoopContext(sock, cfg, slots, memoryview(b""), native=engine == "native")


@contextmanager
def stop_after(seconds: float) -> Iterator[None]:
    """SIGALRM raises StopLoad ``seconds`` from now, as SIGUSR1 does in an endpoint."""

    def stop(signum, frame):
        raise StopLoad

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def alarm() -> Iterator[None]:
    with stop_after(0.2):
        yield


@pytest.mark.parametrize("engine", ENGINES)
def test_the_receiver_counts_every_byte_until_eof(engine):
    a, b = socket.socketpair()
    with a, b:
        a.sendall(bytes(10_000))
        a.shutdown(socket.SHUT_WR)
        ctx = _ctx(b, TCP, engine)
        stream.recv_loop(ctx)
        assert ctx.slots[BYTES_RECEIVED] == 10_000
        assert 3 <= ctx.slots[MESSAGES_RECEIVED] <= 10_000  # 4096-byte reads, possibly fewer bytes each


@pytest.mark.parametrize("engine", ENGINES)
def test_a_blocked_sender_stops_on_the_signal_with_its_counts_and_shuts_its_side(engine, alarm):
    a, b = socket.socketpair()
    with a, b:
        ctx = _ctx(a, TCP, engine)
        start = time.monotonic()
        with pytest.raises(StopLoad):
            stream.send_loop(ctx)  # nobody reads: it blocks once the buffers are full
        assert time.monotonic() - start < 2
        sent = ctx.slots[BYTES_SENT]
        assert sent > 0 and ctx.slots[MESSAGES_SENT] >= sent // TCP.send_size
        received = 0
        while chunk := b.recv(1 << 16):  # EOF: the sender shut its side
            received += len(chunk)
        assert received == sent


@pytest.mark.parametrize("engine", ENGINES)
def test_a_sender_whose_peer_is_gone_raises_the_same_oserror(engine):
    a, b = socket.socketpair()
    b.close()
    with a, pytest.raises(BrokenPipeError):
        stream.send_loop(_ctx(a, TCP, engine))


@pytest.mark.parametrize("engine", ENGINES)
def test_udp_datagrams_carry_their_send_time_and_sequence_number(engine, alarm):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        ctx = _ctx(a, UDP, engine)
        before = time.monotonic_ns()
        with pytest.raises(StopLoad):
            stream.udp_send_loop(ctx)  # blocks once the peer's queue is full
        b.setblocking(False)
        stamps = []
        while True:
            try:
                stamps.append(stream._STAMP.unpack_from(b.recv(1024)))
            except BlockingIOError:
                break
        assert len(stamps) == ctx.slots[MESSAGES_SENT] > 0
        assert ctx.slots[BYTES_SENT] == len(stamps) * UDP.send_size
        assert [seq for _, seq in stamps] == list(range(len(stamps)))
        times = [t for t, _ in stamps]
        assert before <= times[0] and times == sorted(times) and times[-1] <= time.monotonic_ns()


@pytest.mark.parametrize("engine", ENGINES)
def test_the_udp_receiver_adds_up_rfc3550_jitter_as_the_reference_does(engine):
    """Stamps a millisecond apart make the transit differences; this host's microseconds of arrival
    spread move the sum by well under 1 %."""
    sent_at = [0, 1_000_000, 0, 3_000_000, 500_000, 2_000_000] * 20
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        for i, at in enumerate(sent_at):
            a.send(stream._STAMP.pack(at, i) + bytes(UDP.send_size - stream._STAMP.size))
        a.send(b"")  # an empty datagram: recv returns 0, which ends both loops as EOF does
        ctx = _ctx(b, UDP, engine)
        stream.udp_recv_loop(ctx)
    assert ctx.slots[MESSAGES_RECEIVED] == len(sent_at)
    assert ctx.slots[BYTES_RECEIVED] == len(sent_at) * UDP.send_size
    expected = sum(jitter.estimates([-at for at in sent_at]))
    assert ctx.slots[JITTER_SUM_NS] == pytest.approx(expected, rel=0.01)


def test_a_udp_receiver_too_small_for_the_stamp_only_counts():
    """Too small a -M for the stamp is recv_loop's case, in both engines (udp_recv_loop hands it over)."""
    cfg = TestConfig(TestName.UDP_STREAM, send_size=8, recv_size=8)
    assert not cfg.measures_jitter
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.send(struct.pack("=q", 1))
        a.send(b"")
        ctx = _ctx(b, cfg, "native")
        stream.udp_recv_loop(ctx)
        assert (ctx.slots[MESSAGES_RECEIVED], ctx.slots[BYTES_RECEIVED], ctx.slots[JITTER_SUM_NS]) == (1, 8, 0)


_DRAINED = struct.Struct("=qqqq")  # bytes, first read's bytes, first and last read's monotonic ns


@contextmanager
def drained(sender: socket.socket, sock: socket.socket) -> Iterator[list[int]]:
    """A forked child reads ``sock`` until EOF (``sender``'s shutdown), timing every read; the list
    yielded is filled, once the block ends, with the child's _DRAINED figures. A child, not a thread:
    a C loop keeps the GIL."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            total = first = t_first = t_last = 0
            while chunk := sock.recv(1 << 16):
                t_last = time.monotonic_ns()
                if not total:
                    first, t_first = len(chunk), t_last
                total += len(chunk)
            os.write(w, _DRAINED.pack(total, first, t_first, t_last))
        finally:
            os._exit(0)
    os.close(w)
    figures: list[int] = []
    try:
        yield figures
    finally:
        sender.shutdown(socket.SHUT_WR)  # the loop did already, unless it failed: then the child ends too
        data = os.read(r, _DRAINED.size)
        os.close(r)
        os.waitpid(pid, 0)
    figures.extend(_DRAINED.unpack(data))


@pytest.mark.parametrize("engine", ENGINES)
def test_the_paced_sender_holds_its_rate_and_stops_on_the_signal(engine):
    """-b at 8 Mbit/s, one 1000-byte send due every millisecond: the reader sees 1 MB/s over ~0.3 s."""
    cfg = TestConfig(TestName.TCP_STREAM, send_size=1000, recv_size=1000, rate_bps=8e6)
    a, b = socket.socketpair()
    with a, b:
        ctx = _ctx(a, cfg, engine)
        with drained(a, b) as figures, stop_after(0.35), pytest.raises(StopLoad):
            stream.send_loop(ctx)  # hands -b to paced_send_loop; stops sleeping or sending
    total, first, t_first, t_last = figures
    assert ctx.slots[BYTES_SENT] == 1000 * ctx.slots[MESSAGES_SENT]
    assert 0 <= total - ctx.slots[BYTES_SENT] <= 1000  # all of it arrived (its side shut: EOF), but one uncounted
    assert t_last - t_first > 0.2e9
    assert (total - first) / ((t_last - t_first) / 1e9) == pytest.approx(1e6, rel=0.04)


@pytest.mark.parametrize("engine", ENGINES)
def test_paced_udp_datagrams_carry_the_stamp_and_leave_on_schedule(engine):
    """-b UDP_STREAM: udp_send_loop's stamp on datagrams 40 ms apart (25/s: ~9 in 0.33 s, within the
    datagram socket pair's 10-datagram queue)."""
    cfg = TestConfig(TestName.UDP_STREAM, send_size=64, recv_size=64, rate_bps=64 * 8 * 25)
    assert cfg.measures_jitter
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        ctx = _ctx(a, cfg, engine)
        with stop_after(0.33), pytest.raises(StopLoad):
            stream.udp_send_loop(ctx)  # hands -b to send_loop, then paced_send_loop
        b.setblocking(False)
        stamps = []
        while True:
            try:
                stamps.append(stream._STAMP.unpack_from(b.recv(1024)))
            except BlockingIOError:
                break
    assert 7 <= len(stamps) == ctx.slots[MESSAGES_SENT] and ctx.slots[BYTES_SENT] == 64 * len(stamps)
    assert [seq for _, seq in stamps] == list(range(len(stamps)))
    times = [t for t, _ in stamps]
    mean_gap = (times[-1] - times[0]) / (len(times) - 1)
    assert mean_gap == pytest.approx(40e6, rel=0.05)  # the schedule is absolute: late wakes do not add up


@pytest.mark.parametrize("engine", ENGINES)
def test_the_sendfile_sender_counts_what_arrives_and_stops_on_the_signal(engine, alarm):
    cfg = TestConfig(TestName.TCP_SENDFILE, send_size=4096, recv_size=4096)
    a, b = socket.socketpair()
    with a, b:
        ctx = _ctx(a, cfg, engine)
        start = time.monotonic()
        with pytest.raises(StopLoad):
            stream.sendfile_loop(ctx)  # nobody reads: it blocks once the buffers are full
        assert time.monotonic() - start < 2
        sent = ctx.slots[BYTES_SENT]
        assert sent > 0 and ctx.slots[MESSAGES_SENT] >= sent // cfg.send_size
        received = 0
        while chunk := b.recv(1 << 16):  # EOF: the sender shut its side
            assert not any(chunk)  # the file's zeros
            received += len(chunk)
        assert received == sent


def _rchar() -> int:
    """Bytes this thread read through read-like syscalls: sendfile(2) counts here, send(2) does not."""
    with open("/proc/thread-self/io") as io:
        return int(next(line.split()[1] for line in io if line.startswith("rchar:")))


@pytest.mark.parametrize(("loop", "engine"), [(loop, e) for loop in ("sendfile_loop", "send_loop") for e in ENGINES])
def test_only_the_sendfile_sender_reads_its_bytes_from_a_file(loop, engine):
    """What TCP_SENDFILE is for, in both engines: every byte counted went through sendfile(2) (the
    thread's rchar grows by it), and send_loop, the control, reads no file."""
    cfg = TestConfig(TestName.TCP_SENDFILE, send_size=65536, recv_size=65536)
    a, b = socket.socketpair()
    with a, b:
        ctx = _ctx(a, cfg, engine)
        with drained(a, b) as figures:
            before = _rchar()
            with stop_after(0.2), pytest.raises(StopLoad):
                getattr(stream, loop)(ctx)
            gained = _rchar() - before
    sent = ctx.slots[BYTES_SENT]
    assert sent > 10 * cfg.send_size
    assert 0 <= figures[0] - sent <= cfg.send_size  # the stop may cut off the count of one sent call
    assert gained >= sent if loop == "sendfile_loop" else gained < cfg.send_size


def test_the_native_senders_check_their_arguments():
    """The C versions exist and refuse what their Python shims never pass: slots too short, a stamped
    buffer shorter than the stamp."""
    mod = native.module("stream")
    assert mod is not None
    slots = memoryview(bytearray(8 * len(SLOTS))).cast("q")
    with pytest.raises(ValueError, match="buffer too small"):
        mod.paced_send_loop(-1, slots, 8, True, 1.0, 0, 0)
    with pytest.raises(ValueError, match="slots too short"):
        mod.sendfile_loop(-1, memoryview(bytearray(8)), 8, -1)
