"""RFC 3550 jitter: the reference estimator by hand, and the UDP_STREAM loops' inline copy against it
over a real datagram socket pair, with send stamps the test chooses."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from vdevperf.counters import BYTES_RECEIVED, JITTER_SUM_NS, MESSAGES_RECEIVED, SLOTS
from vdevperf.load import stream
from vdevperf.load.context import LoopContext
from vdevperf.load.tests import TESTS
from vdevperf.measure import jitter
from vdevperf.model import UDP_TIMESTAMP_BYTES, TestConfig, TestName


def test_the_estimator_follows_rfc_3550_by_hand():
    # Transits 10, 14, 11, 11, 31 µs: |D| = 4, 3, 0, 20 µs (in ns below). By RFC 3550's J += (|D| - J)/16:
    # J1 = 4000/16 = 250; J2 = 250 + (3000 - 250)/16 = 421.875 -> 421 (floored);
    # J3 = 421 + (0 - 421)/16 = 394.69 -> 394; J4 = 394 + (20000 - 394)/16 = 1619.375 -> 1619.
    transits = [10_000, 14_000, 11_000, 11_000, 31_000]
    assert jitter.estimates(transits) == [250, 421, 394, 1619]
    assert jitter.estimate(transits) == 1619 and jitter.estimate(transits[:1]) == 0


def test_the_integer_estimator_stays_within_a_ns_of_the_exact_one():
    transits = [(i * 7919) % 5003 * 13 for i in range(2000)]
    exact, previous = 0.0, transits[0]
    for t in transits[1:]:
        exact += (abs(t - previous) - exact) / 16
        previous = t
    assert exact - 16 <= jitter.estimate(transits) <= exact


def test_steady_transits_have_no_jitter_and_a_constant_clock_offset_cancels():
    assert jitter.estimate([5_000] * 100) == 0
    wobbly = [1_000, 3_000, 2_000, 7_000, 1_500]
    assert jitter.estimate(wobbly) == jitter.estimate([t + 10**12 for t in wobbly]) > 0


def test_udp_stream_runs_the_timestamping_loops():
    assert (TESTS[TestName.UDP_STREAM].client_loop, TESTS[TestName.UDP_STREAM].server_loop) == (
        stream.udp_send_loop,
        stream.udp_recv_loop,
    )
    assert TestConfig(test=TestName.UDP_STREAM, send_size=UDP_TIMESTAMP_BYTES).measures_jitter
    assert not TestConfig(test=TestName.UDP_STREAM, send_size=UDP_TIMESTAMP_BYTES - 1).measures_jitter
    assert not TestConfig(test=TestName.UDP_STREAM, send_size=1472, recv_size=8).measures_jitter
    assert TestConfig(test=TestName.UDP_RR).measures_jitter
    assert not TestConfig(test=TestName.TCP_RR).measures_jitter


def _receive(datagrams: list[bytes], cfg: TestConfig) -> memoryview:
    """Queue ``datagrams`` then an empty one (the receiver's EOF) on a socket pair; run the UDP_STREAM
    receiver over them; its slots."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    slots = memoryview(bytearray(8 * len(SLOTS))).cast("q")
    with ours, theirs:
        for d in datagrams:
            theirs.send(d)
        theirs.send(b"")
        stream.udp_recv_loop(LoopContext(ours, cfg, slots, memoryview(bytearray(0)).cast("q")))
    return slots


def test_the_receiver_estimates_jitter_from_the_senders_stamps():
    # All datagrams are queued before the loop reads them, so arrivals are microseconds apart and
    # the stamps' milliseconds dominate: the transit of datagram i is about -stamp(i) + constant.
    size = 64
    base = time.monotonic_ns()
    stamps = [base - ms * 1_000_000 for ms in (0, 1, 3, 3, 8, 9, 20, 21, 21, 40)]
    datagrams = [struct.pack("=qQ", s, i) + bytes(size - UDP_TIMESTAMP_BYTES) for i, s in enumerate(stamps)]
    slots = _receive(datagrams, TestConfig(test=TestName.UDP_STREAM, send_size=size, recv_size=size))
    assert slots[MESSAGES_RECEIVED] == len(stamps) and slots[BYTES_RECEIVED] == size * len(stamps)
    expected = jitter.estimates([-s for s in stamps])
    assert min(expected) > 50_000  # far above the reads' µs spacing
    # Each of the 9 estimates may be off by the spread of the reads' times: well under 50 µs each.
    assert slots[JITTER_SUM_NS] == pytest.approx(sum(expected), abs=9 * 50_000)


def test_without_room_for_a_stamp_the_receiver_only_counts():
    datagrams = [b"\xff" * 8] * 5
    slots = _receive(datagrams, TestConfig(test=TestName.UDP_STREAM, send_size=8, recv_size=8))
    assert slots[MESSAGES_RECEIVED] == 5 and slots[JITTER_SUM_NS] == 0


@pytest.mark.parametrize("paced", [False, True])
def test_the_sender_stamps_each_datagram_with_the_clock_and_its_number(paced):
    """Paced too (-b, 100 Mbit/s here): jitter at a set rate is how iperf3 users read it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    slots = memoryview(bytearray(8 * len(SLOTS))).cast("q")
    cfg = TestConfig(test=TestName.UDP_STREAM, send_size=100, rate_bps=1e8 if paced else None)
    got: list[bytes] = []

    def read() -> None:
        while len(got) < 50:
            got.append(theirs.recv(200))
        theirs.close()  # the sender's next send fails: the end of its loop

    reader = threading.Thread(target=read)
    before = time.monotonic_ns()
    reader.start()
    with ours, pytest.raises(OSError):
        stream.udp_send_loop(LoopContext(ours, cfg, slots, memoryview(bytearray(0)).cast("q")))
    reader.join()
    after = time.monotonic_ns()
    fields = [struct.unpack_from("=qQ", d) for d in got]
    assert all(len(d) == 100 for d in got)
    assert [n for _, n in fields] == list(range(50))
    sent = [t for t, _ in fields]
    assert before <= sent[0] and sent == sorted(sent) and sent[-1] <= after
