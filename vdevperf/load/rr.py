"""Request/response loops (TCP_RR, UDP_RR, TCP_CRR): one transaction is a request and its whole response.

The client sends ``-r REQ`` bytes and waits for all ``RESP`` bytes back; the
server does the opposite. A single recv usually returns the whole message, so
the loops try that first and fall back to a slice loop only for partial reads.

The client times every transaction with one clock read (the time since the
previous one ended, so nothing between transactions goes unaccounted) and
adds it to the shared latency histogram, computing the bucket inline (see
measure.histogram). Per transaction: two syscalls (CRR: a connection too),
one clock read, a few integer operations and two stores. The RR loops call
os.write and os.readv on the socket's fd: for a blocking socket they are the
same syscalls as send/recv_into, but ~0.3 µs cheaper per call in CPython,
which is a tenth of a same-CPU round trip.

With --burst N the client keeps N transactions in flight (burst_request_loop),
and times each from its request's send to its response's arrival. UDP_RR
clients run that loop at any N, for its RFC 3550 jitter of round-trip times:
at N = 1 it costs ~0.13 µs more client CPU per transaction than request_loop
(measured on this machine over an AF_UNIX pair, both ends on one CPU).

With the native engine (LoopContext.native), request_loop, paced_request_loop, burst_request_loop,
response_loop (and so udp_response_loop after its connect), crr_request_loop and crr_response_loop run
their C versions in _native_rr.c: the same syscalls, clock, counters and histogram without the
interpreter's ~1.4 µs per transaction.
"""

from __future__ import annotations

import os
import socket
import time

from vdevperf.counters import BYTES_RECEIVED, BYTES_SENT, CONNECTIONS, ERRORS, JITTER_SUM_NS, TRANSACTIONS
from vdevperf.errors import LoadError
from vdevperf.load import native
from vdevperf.load.context import Loop, LoopContext, NativeLoops
from vdevperf.load.pacing import fine_timer
from vdevperf.measure.histogram import HALF_BITS, SUB_BITS
from vdevperf.traits import TestName

# The C versions of these loops (_native_rr.c), or None if they did not build.
_RR = native.module("rr")


def _native_request_loop(ctx: LoopContext) -> None:
    """request_loop in C: same syscalls, clock, counters and histogram; a server's close raises here."""
    cfg = ctx.cfg
    assert _RR is not None
    if _RR.request_loop(ctx.data_socket().fileno(), ctx.slots, ctx.hist, cfg.request_size, cfg.response_size):
        raise LoadError("RR client", "server closed the connection mid-test")


def _native_paced_request_loop(ctx: LoopContext) -> None:
    """paced_request_loop in C: the same schedule (due times as floats, truncated) and sleeps to it."""
    cfg = ctx.cfg
    assert _RR is not None
    fine_timer()
    period = 1e9 / (cfg.flow_rate_tps or 1.0)
    fd = ctx.data_socket().fileno()
    if _RR.paced_request_loop(fd, ctx.slots, ctx.hist, cfg.request_size, cfg.response_size, period):
        raise LoadError("RR client", "server closed the connection mid-test")


def _native_burst_request_loop(ctx: LoopContext) -> None:
    """burst_request_loop in C: the same ring, jitter estimate and lost-window refill."""
    cfg = ctx.cfg
    assert _RR is not None
    fd = ctx.data_socket().fileno()
    if _RR.burst_request_loop(fd, ctx.slots, ctx.hist, cfg.request_size, cfg.response_size, cfg.burst):
        raise LoadError("RR client", "server closed the connection mid-test")


def _native_crr_request_loop(ctx: LoopContext) -> None:
    """crr_request_loop in C: its own socket(), the client's socket options (as roles.client_role's
    new_socket sets them) and connect() per transaction; a server's early close raises here."""
    cfg = ctx.cfg
    assert _RR is not None
    family, host, port = ctx.peer_address()
    # A numeric address, as socket.connect would resolve it (an IPv6 one may carry a %scope).
    sockaddr = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)[0][4]
    scope_id = sockaddr[3] if len(sockaddr) == 4 else 0
    sndbuf = -1 if cfg.client_sndbuf is None else cfg.client_sndbuf
    rcvbuf = -1 if cfg.client_rcvbuf is None else cfg.client_rcvbuf
    cc = None if cfg.congestion_control is None else cfg.congestion_control.encode()
    if _RR.crr_request_loop(
        family, str(sockaddr[0]), port, scope_id, ctx.slots, ctx.hist, cfg.request_size, cfg.response_size,
        sndbuf, rcvbuf, cc, cfg.nodelay,
    ):  # fmt: skip
        raise LoadError("TCP_CRR client", "server closed the connection before responding")


def _fill(recv_into, view: memoryview, have: int, want: int) -> int:
    """Finish a partially received message; returns ``want`` or 0 at EOF."""
    while have < want:
        n = recv_into(view[have:])
        if not n:
            return 0
        have += n
    return have


def request_loop(ctx: LoopContext) -> None:
    """Client: send a request, read the whole response, time and count it; until stopped.

    The next request goes out as soon as a response is in and timed; the
    bookkeeping follows, overlapping the server's turn instead of lengthening
    every round trip. A transaction's latency is the time between two
    response completions, so nothing in the loop goes unaccounted.

    Over UDP a request or response can be lost: the socket's receive timeout
    (SO_RCVTIMEO, set by the runner) then ends the wait, the loss is counted
    in ``errors`` and a new request goes out. With --rate, paced_request_loop;
    with --burst, and for UDP_RR's jitter, burst_request_loop.
    """
    if ctx.cfg.rate_tps is not None:
        paced_request_loop(ctx)
        return
    if ctx.cfg.burst > 1 or ctx.cfg.measures_jitter:  # --burst, and UDP_RR's round-trip jitter
        burst_request_loop(ctx)
        return
    if ctx.native and _RR is not None:
        _native_request_loop(ctx)
        return
    cfg, slots, hist = ctx.cfg, ctx.slots, ctx.hist
    request = bytes(cfg.request_size)
    want = cfg.response_size
    buf = bytearray(want)
    view = memoryview(buf)
    sock = ctx.data_socket()
    fd = sock.fileno()
    write, readv, bufs = os.write, os.readv, [buf]
    recv_into = sock.recv_into
    clock = time.perf_counter_ns
    sub, half = SUB_BITS, HALF_BITS
    done = lost = 0
    try:
        prev = clock()
        write(fd, request)
        while True:
            try:
                n = readv(fd, bufs)
            except BlockingIOError:  # UDP receive timeout: the request or its response was lost
                lost += 1
                slots[ERRORS] = lost
                prev = clock()
                write(fd, request)
                continue
            if n != want and _fill(recv_into, view, n, want) != want:
                raise LoadError("RR client", "server closed the connection mid-test")
            now = clock()
            write(fd, request)
            v = now - prev
            prev = now
            m = v.bit_length()
            hist[v if m <= sub else ((m - sub) << half) + (v >> (m - sub))] += 1
            done += 1
            slots[TRANSACTIONS] = done
    finally:
        slots[BYTES_SENT] = done * cfg.request_size
        slots[BYTES_RECEIVED] = done * want


def paced_request_loop(ctx: LoopContext) -> None:
    """--rate: transaction k is due at ``start + k / rate`` (this flow's share of --rate), and its latency
    runs from that due time to its response, as wrk2 times them.

    Timing from the actual send would let a slow response hide the requests it held back
    (coordinated omission): here a response late by a second makes every transaction due meanwhile
    late too, and they go out back to back, each timed from when it should have started. The
    schedule is never trimmed. A lost UDP datagram is counted in ``errors``; the schedule goes on.
    """
    if ctx.native and _RR is not None:
        _native_paced_request_loop(ctx)
        return
    cfg, slots, hist = ctx.cfg, ctx.slots, ctx.hist
    fine_timer()
    period = 1e9 / (cfg.flow_rate_tps or 1.0)
    request = bytes(cfg.request_size)
    want = cfg.response_size
    buf = bytearray(want)
    view = memoryview(buf)
    sock = ctx.data_socket()
    fd = sock.fileno()
    write, readv, bufs = os.write, os.readv, [buf]
    recv_into = sock.recv_into
    clock, sleep = time.perf_counter_ns, time.sleep
    sub, half = SUB_BITS, HALF_BITS
    done = lost = 0
    start = clock()
    try:
        while True:
            due = start + int((done + lost) * period)
            now = clock()
            if due > now:
                sleep((due - now) / 1e9)
            write(fd, request)
            try:
                n = readv(fd, bufs)
            except BlockingIOError:  # UDP receive timeout: the request or its response was lost
                lost += 1
                slots[ERRORS] = lost
                continue
            if n != want and _fill(recv_into, view, n, want) != want:
                raise LoadError("RR client", "server closed the connection mid-test")
            v = clock() - due
            m = v.bit_length()
            hist[v if m <= sub else ((m - sub) << half) + (v >> (m - sub))] += 1
            done += 1
            slots[TRANSACTIONS] = done
    finally:
        slots[BYTES_SENT] = done * cfg.request_size
        slots[BYTES_RECEIVED] = done * want


def burst_request_loop(ctx: LoopContext) -> None:
    """Client of --burst N (and of every UDP_RR): N transactions in flight; a request goes out per response in.

    Responses come back in request order (TCP is a byte stream; UDP over one path does not reorder),
    so a ring of send times, oldest first, pairs each response with its request: a transaction's
    latency is from its request's send to its response's arrival, queueing behind the others
    included. One read may bring several responses (k x ``RESP`` bytes over TCP, when the server
    was quicker than this loop) or part of one: whole ones are counted, the rest is carried; the
    k new requests go out in one write. Bytes matter only by count (every message is zeros).

    Every transaction also feeds RFC 3550's jitter estimator (section 6.4.1; measure.jitter)
    with its latency as the transit time: round-trip jitter, since one clock takes both ends.
    The estimate after each adds up in the jitter_sum_ns slot (see counters).

    UDP loss: a lost request or response leaves the window one short, unnoticed (responses carry
    no id) until all N are lost; the receive timeout (SO_RCVTIMEO, set by the runner) then ends
    the wait, the whole window is counted as lost in ``errors`` and a new window goes out.
    """
    if ctx.native and _RR is not None:
        _native_burst_request_loop(ctx)
        return
    cfg, slots, hist = ctx.cfg, ctx.slots, ctx.hist
    inflight, want = cfg.burst, cfg.response_size
    request = bytes(cfg.request_size)
    requests = [request * k for k in range(inflight + 1)]  # TCP: k requests in one write
    buf = bytearray(inflight * want)  # never more than N responses are outstanding
    fd = ctx.data_socket().fileno()
    write, readv, bufs = os.write, os.readv, [buf]
    clock = time.perf_counter_ns
    sub, half = SUB_BITS, HALF_BITS
    # The estimator starts at 0 with a first step of the first latency: forgotten ((15/16)^n) within
    # a few hundred transactions, long before the window opens.
    done = lost = carried = jitter = total = prev = 0
    sent = [0] * inflight  # send times, a ring: sent[oldest] is the next response's request
    oldest, last = 0, inflight - 1
    try:
        for i in range(inflight):  # one message each: over UDP a write is a datagram
            sent[i] = clock()
            write(fd, request)
        while True:
            try:
                n = readv(fd, bufs)
            except BlockingIOError:  # UDP receive timeout: every transaction in flight was lost
                lost += inflight
                slots[ERRORS] = lost
                for i in range(inflight):
                    sent[i] = clock()
                    write(fd, request)
                oldest = 0
                continue
            now = clock()
            if n == want and not carried:  # one whole response: every UDP one, most TCP ones
                write(fd, request)
                k = 1
            else:
                if not n:
                    raise LoadError("RR client", "server closed the connection mid-test")
                k, carried = divmod(carried + n, want)
                if not k:
                    continue
                write(fd, requests[k])
            done += k
            while k:  # a while, not a for over range(k): ~50 ns less per transaction
                k -= 1
                v = now - sent[oldest]
                sent[oldest] = now
                oldest = oldest + 1 if oldest < last else 0
                m = v.bit_length()
                hist[v if m <= sub else ((m - sub) << half) + (v >> (m - sub))] += 1
                d = v - prev
                prev = v
                jitter += ((d if d >= 0 else -d) - jitter) >> 4
                total += jitter
            slots[TRANSACTIONS] = done
            slots[JITTER_SUM_NS] = total
    finally:
        slots[BYTES_SENT] = done * cfg.request_size
        slots[BYTES_RECEIVED] = done * want


def response_loop(ctx: LoopContext) -> None:
    """Server: read a whole request, send the response; until the client closes or it is stopped."""
    if ctx.native and _RR is not None:
        _RR.response_loop(ctx.data_socket().fileno(), ctx.slots, ctx.cfg.request_size, ctx.cfg.response_size)
        return
    cfg, slots = ctx.cfg, ctx.slots
    response = bytes(cfg.response_size)
    want = cfg.request_size
    buf = bytearray(want)
    view = memoryview(buf)
    sock = ctx.data_socket()
    fd = sock.fileno()
    write, readv, bufs = os.write, os.readv, [buf]
    recv_into = sock.recv_into
    done = 0
    try:
        # Work is counted at the client; the server's total is stored once, at the end.
        while True:
            n = readv(fd, bufs)
            if n != want and _fill(recv_into, view, n, want) != want:
                break
            write(fd, response)
            done += 1
    except (ConnectionResetError, BrokenPipeError, ConnectionRefusedError):
        # The client stopped with a response unread (TCP: reset; UDP: port unreachable):
        # the normal end of a test.
        pass
    finally:
        slots[TRANSACTIONS] = done
        slots[BYTES_RECEIVED] = done * want
        slots[BYTES_SENT] = done * cfg.response_size


def udp_response_loop(ctx: LoopContext) -> None:
    """UDP server: learn the client from its first request, connect to it, then serve as over TCP."""
    sock = ctx.data_socket()
    buf = bytearray(ctx.cfg.request_size)
    _, peer = sock.recvfrom_into(buf)
    sock.connect(peer)
    sock.send(bytes(ctx.cfg.response_size))
    response_loop(ctx)


def crr_request_loop(ctx: LoopContext) -> None:
    """TCP_CRR client: connect, request, response, close per transaction; until stopped.

    The client reads until the server's FIN before closing, so the server
    closes first and TIME_WAIT stays on the server, not on the client's
    ephemeral ports (which would run out within seconds).
    """
    if ctx.native and _RR is not None:
        _native_crr_request_loop(ctx)
        return
    cfg, slots, hist = ctx.cfg, ctx.slots, ctx.hist
    request = bytes(cfg.request_size)
    want = cfg.response_size
    buf = bytearray(max(want, 1))
    view = memoryview(buf)
    connect = ctx.connector()
    clock = time.perf_counter_ns
    sub, half = SUB_BITS, HALF_BITS
    done = 0
    try:
        prev = clock()
        while True:
            sock = connect()
            try:
                sock.sendall(request)
                recv_into = sock.recv_into
                n = recv_into(buf)
                if n != want and _fill(recv_into, view, n, want) != want:
                    raise LoadError("TCP_CRR client", "server closed the connection before responding")
                recv_into(buf)  # the server's FIN
            finally:
                sock.close()
            now = clock()
            v = now - prev
            prev = now
            m = v.bit_length()
            hist[v if m <= sub else ((m - sub) << half) + (v >> (m - sub))] += 1
            done += 1
            slots[TRANSACTIONS] = done
            slots[CONNECTIONS] = done
    finally:
        slots[BYTES_SENT] = done * cfg.request_size
        slots[BYTES_RECEIVED] = done * want


def crr_response_loop(ctx: LoopContext) -> None:
    """TCP_CRR server: accept, read the request, respond, close; until stopped. Counts accepts."""
    if ctx.native and _RR is not None:
        _RR.crr_response_loop(ctx.data_socket().fileno(), ctx.slots, ctx.cfg.request_size, ctx.cfg.response_size)
        return
    cfg, slots = ctx.cfg, ctx.slots
    response = bytes(cfg.response_size)
    want = cfg.request_size
    buf = bytearray(want)
    view = memoryview(buf)
    accept = ctx.data_socket().accept
    accepted = done = 0
    try:
        while True:
            conn, _ = accept()
            accepted += 1
            slots[CONNECTIONS] = accepted
            try:
                recv_into = conn.recv_into
                n = recv_into(buf)
                if n == want or _fill(recv_into, view, n, want) == want:
                    conn.sendall(response)
                    done += 1
                    slots[TRANSACTIONS] = done
            except (ConnectionResetError, BrokenPipeError):
                pass  # the client went away mid-transaction (stopped): not counted
            finally:
                conn.close()
    finally:
        slots[BYTES_RECEIVED] = done * want
        slots[BYTES_SENT] = done * cfg.response_size


# The tests these loops run: (client loop, server loop).
LOOPS: dict[TestName, tuple[Loop, Loop]] = {
    TestName.TCP_RR: (request_loop, response_loop),
    TestName.TCP_CRR: (crr_request_loop, crr_response_loop),
    TestName.UDP_RR: (request_loop, udp_response_loop),
}

# The loops above with a C version, run when the engine is native (LoopContext.native); request_loop's
# variants (paced_request_loop, burst_request_loop) have theirs too. crr_request_loop's C version sets
# the client's socket options itself and needs no greeting: a remote server's TCP_CRR listener admits
# by address, not by a token per connection (remote.admission).
NATIVE_LOOPS: NativeLoops = dict.fromkeys(
    (request_loop, response_loop, udp_response_loop, crr_request_loop, crr_response_loop), lambda cfg: True
)
