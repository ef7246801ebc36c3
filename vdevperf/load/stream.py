"""Bulk-transfer loops (TCP_STREAM, TCP_MAERTS, UDP_STREAM): a sender and a counting receiver.

Both loops allocate their buffer once and publish running totals into their
shared counter slots on every call, which is the only per-call work besides
the syscall. The same loops serve TCP (a byte stream: a send may be partial,
the receiver ends at EOF) and UDP (one message per call). The sender runs
until SIGUSR1 raises StopLoad; the receiver until EOF or StopLoad.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import tempfile
import time
from collections.abc import Callable

from vdevperf.counters import (
    BYTES_RECEIVED,
    BYTES_SENT,
    ERRORS,
    JITTER_SUM_NS,
    MESSAGES_RECEIVED,
    MESSAGES_SENT,
    ZEROCOPY_COPIED,
    ZEROCOPY_SENDS,
)
from vdevperf.load import native
from vdevperf.load.context import Loop, LoopContext, NativeLoops
from vdevperf.load.pacing import MAX_STREAM_LAG_NS, STREAM_AHEAD_NS, cap_pacing_rate, fine_timer
from vdevperf.model import TestConfig
from vdevperf.traits import TestName

# MSG_ZEROCOPY (linux/socket.h, errqueue.h); Python names some of them only on newer versions.
SO_ZEROCOPY = getattr(socket, "SO_ZEROCOPY", 60)
MSG_ZEROCOPY = getattr(socket, "MSG_ZEROCOPY", 0x4000000)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_ORIGIN_ZEROCOPY = 5  # SO_EE_ORIGIN_ZEROCOPY
_CODE_COPIED = 1  # SO_EE_CODE_ZEROCOPY_COPIED
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err
# -Z: buffers the sender rotates through; a power of two, so a send's id picks its buffer by a mask
# that stays right when the kernel's 32-bit ids wrap.
ZEROCOPY_RING = 4
# UDP_STREAM with jitter: each datagram starts with its send time (CLOCK_MONOTONIC ns, one clock for every
# namespace of a host) and its sequence number; model.UDP_TIMESTAMP_BYTES is this header's size.
_STAMP = struct.Struct("=qQ")
_SENT_AT = struct.Struct("=q")
# The C versions of send_loop, paced_send_loop, sendfile_loop, udp_send_loop, recv_loop and udp_recv_loop
# (None: not built); a loop hands its work to its C version when ctx.native says so (NATIVE_LOOPS below:
# for which configs).
_NATIVE = native.module("stream")


def send_loop(ctx: LoopContext) -> None:
    """Send ``-m`` bytes per call until stopped; count bytes and calls (UDP: messages).

    The stop can land just after a send returned and before it was counted, so
    the sender's total may fall short by one call; figures use the receiver's.
    With -Z (TCP) the sends are MSG_ZEROCOPY ones (zerocopy_send_loop), with -b paced ones
    (paced_send_loop); --fq-rate leaves the pacing to the kernel.
    """
    if ctx.cfg.zerocopy:
        zerocopy_send_loop(ctx)
        return
    if ctx.cfg.rate_bps is not None:
        paced_send_loop(ctx)
        return
    sock, slots = ctx.data_socket(), ctx.slots
    if ctx.cfg.fq_rate_bps is not None:
        cap_pacing_rate(sock, ctx.cfg.fq_rate_bps / ctx.cfg.flows)
    if ctx.native and _NATIVE is not None:
        _native_send(_NATIVE.send_loop, ctx)
        return
    buf = memoryview(bytearray(ctx.cfg.send_size))
    send = sock.send
    sent = calls = errors = 0
    try:
        while True:
            try:
                n = send(buf)
            except OSError as exc:
                # UDP: ENOBUFS when a queue below is full; the message is lost, not the test.
                if exc.errno != errno.ENOBUFS:
                    raise
                errors += 1
                slots[ERRORS] = errors
                continue
            sent += n
            calls += 1
            slots[BYTES_SENT] = sent
            slots[MESSAGES_SENT] = calls
    finally:
        _stop_sending(sock)


def _stop_sending(sock: socket.socket) -> None:
    """Shut the sending side, so a TCP receiver sees EOF and ends by itself (UDP: a no-op)."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


# A native loop: (socket fd, the endpoint's slots, buffer size); returns at EOF or raises (StopLoad, OSError).
NativeLoop = Callable[[int, memoryview, int], None]


def _native_send(run: NativeLoop, ctx: LoopContext) -> None:
    """A sender's C loop, ended as the Python senders end (_stop_sending)."""
    sock = ctx.data_socket()
    try:
        run(sock.fileno(), ctx.slots, ctx.cfg.send_size)
    finally:
        _stop_sending(sock)


def paced_send_loop(ctx: LoopContext) -> None:
    """-b: send_loop on an absolute schedule, this flow's share of -b in payload bits/s (iperf3's -b).

    A send of n bytes moves the schedule on by n / rate; the loop sleeps once it is STREAM_AHEAD_NS
    ahead, until it is on time again, and sends while it is behind. Lag beyond MAX_STREAM_LAG_NS (a
    path slower than asked, a host stall) is forgiven, so the achieved rate then falls short, as the
    table shows, rather than bursting to catch up. UDP_STREAM's datagrams carry udp_send_loop's stamp
    (for the receiver's jitter at a set rate, iperf3's habit), if there is room for it.
    """
    cfg, sock, slots = ctx.cfg, ctx.data_socket(), ctx.slots
    fine_timer()
    ns_per_byte = 8e9 / (cfg.flow_rate_bps or 1.0)
    stamped = cfg.measures_jitter
    if ctx.native and _NATIVE is not None:
        paced = _NATIVE.paced_send_loop
        _native_send(lambda fd, s, n: paced(fd, s, n, stamped, ns_per_byte, STREAM_AHEAD_NS, MAX_STREAM_LAG_NS), ctx)
        return
    buf = memoryview(bytearray(cfg.send_size))
    send, clock, sleep = sock.send, time.monotonic_ns, time.sleep
    stamp = _STAMP.pack_into
    sent = calls = errors = 0
    due = clock()  # when the next byte may leave
    try:
        while True:
            now = clock()
            if due - now > STREAM_AHEAD_NS:
                sleep((due - now) / 1e9)
            elif now - due > MAX_STREAM_LAG_NS:
                due = now - MAX_STREAM_LAG_NS
            if stamped:
                stamp(buf, 0, clock(), calls)
            try:
                n = send(buf)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                errors += 1
                slots[ERRORS] = errors
                n = len(buf)  # the message is lost, but it was offered: the schedule moves on
            else:
                sent += n
                calls += 1
                slots[BYTES_SENT] = sent
                slots[MESSAGES_SENT] = calls
            due += int(n * ns_per_byte)
    finally:
        _stop_sending(sock)


def _reap(recvmsg: Callable[..., tuple], busy: bytearray, slots: memoryview) -> bool:
    """Take every MSG_ZEROCOPY completion queued on the socket: free the buffers of the sends it
    covers (ids lo..hi) and count them as sent from our pages or copied. True if there was one."""
    mask, reaped = len(busy) - 1, False
    while True:
        try:
            _, ancdata, _, _ = recvmsg(0, 64, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return reaped
        for _level, _type, data in ancdata:
            _errno, origin, _kind, code, _pad, lo, hi = _EXTENDED_ERR.unpack_from(data)
            if origin != _ORIGIN_ZEROCOPY:
                continue
            count = ((hi - lo) & 0xFFFFFFFF) + 1
            for i in range(min(count, len(busy))):  # never more ids in flight than buffers
                busy[(lo + i) & mask] = 0
            slots[ZEROCOPY_COPIED if code & _CODE_COPIED else ZEROCOPY_SENDS] += count
            reaped = True


def zerocopy_send_loop(ctx: LoopContext) -> None:
    """-Z: send with MSG_ZEROCOPY (neper's zerocopy), so the kernel sends from our pages, not a copy.

    The kernel holds a send's pages until its completion arrives on the socket's error queue, so a
    buffer is reused only once the completion of the send that used it is in: the loop rotates
    through ZEROCOPY_RING buffers and waits (poll for POLLERR) only when the next one is still
    busy. Send number k (the kernel numbers successful sends from 0) uses buffer k % ZEROCOPY_RING.
    Completions say whether the kernel copied after all; both counts go to the zerocopy_* slots.
    Reaping allocates (recvmsg's control data), but per batch of completions, not per send.
    """
    sock, slots = ctx.data_socket(), ctx.slots
    sock.setsockopt(socket.SOL_SOCKET, SO_ZEROCOPY, 1)
    ring = [memoryview(bytearray(ctx.cfg.send_size)) for _ in range(ZEROCOPY_RING)]
    busy = bytearray(ZEROCOPY_RING)  # 1 while the kernel may still read that buffer
    mask = ZEROCOPY_RING - 1
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLERR)
    wait, send, recvmsg = poller.poll, sock.send, sock.recvmsg
    sent = calls = 0
    try:
        while True:
            slot = calls & mask
            while busy[slot] and not _reap(recvmsg, busy, slots):
                wait()
            try:
                n = send(ring[slot], MSG_ZEROCOPY)
            except OSError as exc:
                # ENOBUFS: too many completions pending (optmem); take them and try again.
                if exc.errno != errno.ENOBUFS:
                    raise
                if not _reap(recvmsg, busy, slots):
                    wait(1)
                continue
            busy[slot] = 1
            sent += n
            calls += 1
            slots[BYTES_SENT] = sent
            slots[MESSAGES_SENT] = calls
    finally:
        _stop_sending(sock)


def sendfile_loop(ctx: LoopContext) -> None:
    """netperf's TCP_SENDFILE: send ``-m`` bytes per call with sendfile(2) from a file in the page
    cache, so that the kernel sends without copying from user memory; counted as send_loop does."""
    sock, slots = ctx.data_socket(), ctx.slots
    size = ctx.cfg.send_size
    out = sock.fileno()
    sent = calls = 0
    with tempfile.TemporaryFile() as source:
        source.write(bytes(size))
        source.flush()
        fd = source.fileno()
        if ctx.native and _NATIVE is not None:
            sendfile = _NATIVE.sendfile_loop
            _native_send(lambda out, s, n: sendfile(out, s, n, fd), ctx)
            return
        try:
            while True:
                n = os.sendfile(out, fd, 0, size)
                sent += n
                calls += 1
                slots[BYTES_SENT] = sent
                slots[MESSAGES_SENT] = calls
        finally:
            _stop_sending(sock)


def udp_send_loop(ctx: LoopContext) -> None:
    """UDP_STREAM sender: send_loop's datagrams, each stamped with its send time and sequence number
    for the receiver's jitter (a -m or -M too small for the stamp: send_loop itself; -b:
    paced_send_loop, which stamps them too)."""
    if not ctx.cfg.measures_jitter or ctx.cfg.rate_bps is not None:
        send_loop(ctx)
        return
    if ctx.native and _NATIVE is not None:
        _native_send(_NATIVE.udp_send_loop, ctx)
        return
    sock, slots = ctx.data_socket(), ctx.slots
    buf = bytearray(ctx.cfg.send_size)
    stamp, clock, send = _STAMP.pack_into, time.monotonic_ns, sock.send
    sent = calls = errors = 0
    try:
        while True:
            stamp(buf, 0, clock(), calls)
            try:
                n = send(buf)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:  # a full queue below: that datagram is lost, as in send_loop
                    raise
                errors += 1
                slots[ERRORS] = errors
                continue
            sent += n
            calls += 1
            slots[BYTES_SENT] = sent
            slots[MESSAGES_SENT] = calls
    finally:
        _stop_sending(sock)


def udp_recv_loop(ctx: LoopContext) -> None:
    """UDP_STREAM receiver: recv_loop's counts plus RFC 3550 jitter of the datagrams' transit times.

    Transit is the arrival time (read after recv returns, as iperf3 does) minus the sender's stamp;
    with both ends on one host they share CLOCK_MONOTONIC, and across hosts the clocks' offset
    cancels in the differences (measure.jitter). Datagrams count in arrival order, reordered or
    not, as the RFC does. The estimate after each datagram adds up in the jitter_sum_ns slot (see
    counters). Per datagram: one clock read, one unpack and a few integer operations.
    """
    if not ctx.cfg.measures_jitter:
        recv_loop(ctx)
        return
    if ctx.native and _NATIVE is not None:
        _NATIVE.udp_recv_loop(ctx.data_socket().fileno(), ctx.slots, ctx.cfg.recv_size)
        return
    slots = ctx.slots
    buf = bytearray(ctx.cfg.recv_size)
    recv_into = ctx.data_socket().recv_into
    sent_at, clock = _SENT_AT.unpack_from, time.monotonic_ns
    received = calls = jitter = total = 0
    n = recv_into(buf)
    if not n:
        return
    previous = clock() - sent_at(buf)[0]  # the first datagram only sets the reference transit
    while True:
        received += n
        calls += 1
        slots[BYTES_RECEIVED] = received
        slots[MESSAGES_RECEIVED] = calls
        n = recv_into(buf)
        if not n:
            return
        transit = clock() - sent_at(buf)[0]
        d = transit - previous
        previous = transit
        jitter += ((d if d >= 0 else -d) - jitter) >> 4  # measure.jitter.step, inline
        total += jitter
        slots[JITTER_SUM_NS] = total


def recv_loop(ctx: LoopContext) -> None:
    """Receive into one ``-M``-byte buffer until EOF; count bytes and calls (UDP: messages)."""
    if ctx.native and _NATIVE is not None:
        _NATIVE.recv_loop(ctx.data_socket().fileno(), ctx.slots, ctx.cfg.recv_size)
        return
    slots = ctx.slots
    buf = bytearray(ctx.cfg.recv_size)
    recv_into = ctx.data_socket().recv_into
    received = calls = 0
    while True:
        n = recv_into(buf)
        if not n:
            return
        received += n
        calls += 1
        slots[BYTES_RECEIVED] = received
        slots[MESSAGES_RECEIVED] = calls


# The tests these loops run: (client loop, server loop).
LOOPS: dict[TestName, tuple[Loop, Loop]] = {
    TestName.TCP_STREAM: (send_loop, recv_loop),
    TestName.TCP_MAERTS: (recv_loop, send_loop),
    TestName.TCP_SENDFILE: (sendfile_loop, recv_loop),
    TestName.UDP_STREAM: (udp_send_loop, udp_recv_loop),
}


def _native_sends(cfg: TestConfig) -> bool:
    """The senders' C loops, plain or -b's paced ones: not -Z's sends (Python's zerocopy_send_loop);
    --fq-rate is the kernel's."""
    return not cfg.zerocopy


# The loops above with a native version (load.native), and the configs they run natively for.
NATIVE_LOOPS: NativeLoops = {
    send_loop: _native_sends,
    udp_send_loop: _native_sends,
    sendfile_loop: lambda cfg: True,
    recv_loop: lambda cfg: True,
    udp_recv_loop: lambda cfg: True,
}
