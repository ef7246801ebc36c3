"""Data connections of a remote session: only that session's client may feed its server endpoints.

Two guards, both set up before any load runs:

- a classic BPF socket filter on every data socket of the session accepts
  packets only from the control connection's peer address, so the kernel
  drops anything else before vdevperf sees a byte (for TCP, the SYN);
- the first DATA_TOKEN_BYTES of a TCP connection, or the first UDP datagram
  (acknowledged, and resent until it is), must be the session's random data
  token; a connection with anything else is closed. Once admitted, a TCP
  connection drops the filter and a UDP socket is connected to its client
  (the kernel then filters by peer), so the measured path carries no filter.

A TCP endpoint waits on every connection at once, each for at most
TOKEN_WAIT_S and at most PENDING_MAX of them (the oldest is closed for a
new one): a connection that says nothing, from the client's own host (which
the filter lets through) or from anywhere when the filter could not be
attached, costs a slot for a moment and stalls nobody.

TCP_CRR opens a connection per transaction: a token on each would add a
send and a receive to every transaction it measures, so its listener keeps
the address filter for the whole test instead.
"""

from __future__ import annotations

import ctypes
import errno
import hmac
import ipaddress
import select
import socket
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from vdevperf.errors import LoadError
from vdevperf.load.roles import Admit, Greet

SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
# Negative offsets of classic BPF address the network header (linux/filter.h).
SKF_NET_OFF = -0x100000
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
# How long a UDP client waits for the token's acknowledgement before sending it again.
UDP_RESEND_S = 0.2
# How long a TCP data connection may take to present the token (its client sends it at once), and
# how many may be waited on together.
TOKEN_WAIT_S = 2.0
PENDING_MAX = 16


def normalized(address: str) -> str:
    """An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as plain IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else address


def _program(address: str) -> list[tuple[int, int, int, int]]:
    """Accept a packet whose IP source is ``address``, drop any other."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    words = [int.from_bytes(ip.packed[i : i + 4], "big") for i in range(0, len(ip.packed), 4)]
    source = 12 if ip.version == 4 else 8  # offset of the source address in the IP header
    program = []
    for i, word in enumerate(words):
        program.append((_LD_W_ABS, 0, 0, (SKF_NET_OFF + source + 4 * i) & 0xFFFFFFFF))
        # Not equal: jump over the remaining word checks and the accept, to the drop.
        program.append((_JEQ_K, 0, 2 * (len(words) - i - 1) + 1, word))
    return [*program, (_RET_K, 0, 0, 0xFFFFFFFF), (_RET_K, 0, 0, 0)]


def peer_filter(sock: socket.socket, address: str) -> None:
    """Let ``sock`` (and sockets it accepts) receive packets from ``address`` only."""
    program = _program(address)
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))
    # struct sock_fprog: the length, then a pointer to the instructions (kept alive by ``code``).
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HP", len(program), ctypes.addressof(code)))


def _drop_filter(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    except OSError as exc:
        if exc.errno != errno.ENOENT:  # ENOENT: there was none (see serving.py)
            raise


def _expired(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise LoadError("data connection", "no client presented the session's data token in time")
    return remaining


@dataclass
class _Candidate:
    conn: socket.socket
    until: float
    got: bytes = b""


def _admit_tcp(listener: socket.socket, token: bytes, deadline: float) -> socket.socket:
    listener.setblocking(False)
    waiting: OrderedDict[int, _Candidate] = OrderedDict()  # by descriptor, oldest first
    poller = select.poll()
    poller.register(listener, select.POLLIN)

    def forget(fd: int) -> None:
        poller.unregister(fd)
        waiting.pop(fd).conn.close()

    try:
        while True:
            now = time.monotonic()
            for fd in [fd for fd, c in waiting.items() if c.until <= now]:
                forget(fd)
            wait = min([_expired(deadline), *(c.until - now for c in waiting.values())])
            for fd, _ in poller.poll(max(wait, 0.0) * 1000):
                if fd == listener.fileno():
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, ConnectionAbortedError):
                        continue
                    if len(waiting) >= PENDING_MAX:
                        forget(next(iter(waiting)))
                    conn.setblocking(False)
                    waiting[conn.fileno()] = _Candidate(conn, time.monotonic() + TOKEN_WAIT_S)
                    poller.register(conn, select.POLLIN)
                    continue
                candidate = waiting.get(fd)
                if candidate is None:
                    continue
                try:
                    chunk = candidate.conn.recv(len(token) - len(candidate.got))
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                candidate.got += chunk
                if not chunk:
                    forget(fd)
                elif len(candidate.got) == len(token):
                    if not hmac.compare_digest(candidate.got, token):
                        forget(fd)
                        continue
                    poller.unregister(fd)
                    conn = waiting.pop(fd).conn
                    conn.setblocking(True)
                    _drop_filter(conn)
                    return conn
    finally:
        for candidate in waiting.values():
            candidate.conn.close()


def _admit_udp(sock: socket.socket, token: bytes, deadline: float) -> socket.socket:
    while True:
        sock.settimeout(_expired(deadline))
        try:
            data, peer = sock.recvfrom(len(token) + 1)
        except TimeoutError:
            continue
        if len(data) == len(token) and hmac.compare_digest(data, token):
            sock.connect(peer)
            sock.send(token)
            sock.settimeout(None)
            _drop_filter(sock)
            return sock


def admitter(per_connection: bool, token: bytes, timeout_s: float) -> Admit:
    """What a server endpoint does with its socket before its loop: wait for the data token."""

    def admit(sock: socket.socket) -> socket.socket:
        deadline = time.monotonic() + timeout_s
        if per_connection:
            return sock  # the address filter stays (see the module docstring)
        if sock.type == socket.SOCK_DGRAM:
            return _admit_udp(sock, token, deadline)
        return _admit_tcp(sock, token, deadline)

    return admit


def greeter(token: bytes, timeout_s: float) -> Greet:
    """What a client sends on its connected data socket before its loop: the data token."""

    def greet(sock: socket.socket) -> None:
        if sock.type == socket.SOCK_STREAM:
            sock.sendall(token)
            return
        deadline = time.monotonic() + timeout_s
        while True:
            sock.send(token)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadError("data connection", "the server did not acknowledge the data token")
            if select.select([sock], [], [], min(UDP_RESEND_S, remaining))[0]:
                try:
                    if sock.recv(len(token) + 1) == token:
                        return
                except ConnectionRefusedError:
                    pass  # the server endpoint's socket is not there yet: send again

    return greet
