"""Bulk-transfer loops (TCP_STREAM): a sender that never stops and a receiver that counts.

Both loops allocate their buffer once and publish a running total into their
shared counter slot on every call, which is the only per-call work besides the
syscall. The sender runs until SIGUSR1 raises StopLoad; the receiver until EOF.
"""

from __future__ import annotations

import socket

from vdevperf.load.endpoint import BYTES_RECEIVED, BYTES_SENT, MESSAGES_RECEIVED, StopLoad
from vdevperf.model import TestConfig


def send_loop(sock: socket.socket, cfg: TestConfig, slots: memoryview) -> None:
    """Send ``-m`` bytes per call until stopped; count bytes handed to the kernel."""
    buf = memoryview(bytearray(cfg.send_size))
    size = len(buf)
    sendall = sock.sendall
    sent = 0
    try:
        while True:
            sendall(buf)
            sent += size
            slots[BYTES_SENT] = sent
    except StopLoad:
        pass
    finally:
        # Stop sending, so the receiver sees EOF and ends by itself.
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def recv_loop(sock: socket.socket, cfg: TestConfig, slots: memoryview) -> None:
    """Receive into one ``-M``-byte buffer until EOF; count bytes and receive calls."""
    buf = bytearray(cfg.recv_size)
    recv_into = sock.recv_into
    received = calls = 0
    while True:
        n = recv_into(buf)
        if not n:
            return
        received += n
        calls += 1
        slots[BYTES_RECEIVED] = received
        slots[MESSAGES_RECEIVED] = calls
