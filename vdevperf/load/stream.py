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
import socket
import tempfile

from vdevperf.counters import BYTES_RECEIVED, BYTES_SENT, ERRORS, MESSAGES_RECEIVED, MESSAGES_SENT
from vdevperf.load.context import Loop, LoopContext
from vdevperf.traits import TestName


def send_loop(ctx: LoopContext) -> None:
    """Send ``-m`` bytes per call until stopped; count bytes and calls (UDP: messages).

    The stop can land just after a send returned and before it was counted, so
    the sender's total may fall short by one call; figures use the receiver's.
    """
    sock, slots = ctx.data_socket(), ctx.slots
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
        # Stop sending, so a TCP receiver sees EOF and ends by itself.
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


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
        try:
            while True:
                n = os.sendfile(out, fd, 0, size)
                sent += n
                calls += 1
                slots[BYTES_SENT] = sent
                slots[MESSAGES_SENT] = calls
        finally:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def recv_loop(ctx: LoopContext) -> None:
    """Receive into one ``-M``-byte buffer until EOF; count bytes and calls (UDP: messages)."""
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
    TestName.UDP_STREAM: (send_loop, recv_loop),
}
