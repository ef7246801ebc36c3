"""Request/response loops (TCP_RR): one transaction is a request and its whole response.

The client sends ``-r REQ`` bytes and waits for all ``RESP`` bytes back; the
server does the opposite. A single recv usually returns the whole message, so
the loops try that first and fall back to a slice loop only for partial reads.
Per transaction there are two syscalls, two additions and one counter store.
"""

from __future__ import annotations

import socket

from vdevperf.errors import LoadError
from vdevperf.load.endpoint import BYTES_RECEIVED, BYTES_SENT, TRANSACTIONS, StopLoad
from vdevperf.model import TestConfig


def _fill(recv_into, view: memoryview, have: int, want: int) -> int:
    """Finish a partially received message; returns ``want`` or 0 at EOF."""
    while have < want:
        n = recv_into(view[have:])
        if not n:
            return 0
        have += n
    return have


def request_loop(sock: socket.socket, cfg: TestConfig, slots: memoryview) -> None:
    """Client: send a request, read the whole response, count one transaction; until stopped."""
    request = bytes(cfg.request_size)
    want = cfg.response_size
    buf = bytearray(want)
    view = memoryview(buf)
    sendall = sock.sendall
    recv_into = sock.recv_into
    done = 0
    try:
        while True:
            sendall(request)
            n = recv_into(buf)
            if n != want and _fill(recv_into, view, n, want) != want:
                raise LoadError("TCP_RR client", "server closed the connection mid-test")
            done += 1
            slots[TRANSACTIONS] = done
    except StopLoad:
        pass
    slots[BYTES_SENT] = done * cfg.request_size
    slots[BYTES_RECEIVED] = done * want


def response_loop(sock: socket.socket, cfg: TestConfig, slots: memoryview) -> None:
    """Server: read a whole request, send the response; until the client closes."""
    response = bytes(cfg.response_size)
    want = cfg.request_size
    buf = bytearray(want)
    view = memoryview(buf)
    sendall = sock.sendall
    recv_into = sock.recv_into
    done = 0
    try:
        while True:
            n = recv_into(buf)
            if n != want and _fill(recv_into, view, n, want) != want:
                break
            sendall(response)
            done += 1
            slots[TRANSACTIONS] = done
    except (ConnectionResetError, BrokenPipeError):
        pass  # the client stopped with a response unread: the normal end of a test
    slots[BYTES_RECEIVED] = done * want
    slots[BYTES_SENT] = done * cfg.response_size
