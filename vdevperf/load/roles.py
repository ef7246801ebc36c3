"""What each endpoint process does: open or take its socket, report ready, wait for the start, run its loop.

The client and the server role are the bodies of forked endpoints
(load.endpoint). A server socket is created in the parent, inside the
server's namespace, so that its port is known before any client starts;
the server endpoint inherits it. A vdevperf server runs the same server
role, with ``admit`` picking the data connection its client announced.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from vdevperf.errors import VdevperfError
from vdevperf.load import endpoint, native
from vdevperf.load.context import Loop, LoopContext, StopLoad
from vdevperf.load.endpoint import Channel, Counters
from vdevperf.load.tests import TestDef, engine_of
from vdevperf.model import TestConfig
from vdevperf.topology import netns

SETUP_TIMEOUT_S = 10.0
# How long a UDP_RR client waits for a response before it counts the transaction lost.
UDP_RR_TIMEOUT_S = 1.0
TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)
# Global, not per namespace: a namespace has its own default (tcp_congestion_control) but not its own lists.
AVAILABLE_CC = "/proc/sys/net/ipv4/tcp_available_congestion_control"
ALLOWED_CC = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"


@dataclass(frozen=True)
class Side:
    """Where one end of the load runs: a namespace path (None: the current one), address, CPU."""

    netns_path: str | None
    address: str
    cpu: int | None = None
    # A server's address as its clients reach it, when a NAT publishes it (None: ``address``).
    published: str | None = None


# What a client sends on a new data connection before its loop starts (a remote session's data
# token), and what a server endpoint does with its socket before its loop (admit only that token).
Greet = Callable[[socket.socket], None]
Admit = Callable[[socket.socket], socket.socket]


def _kind(tdef: TestDef) -> socket.SocketKind:
    return socket.SOCK_DGRAM if tdef.traits.udp else socket.SOCK_STREAM


def _set_buffers(sock: socket.socket, sndbuf: int | None, rcvbuf: int | None) -> None:
    # Before connect/listen, so TCP's window scale is chosen with the final size.
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)


def usable_congestion_controls() -> frozenset[str]:
    """The algorithms setsockopt(TCP_CONGESTION) accepts from us without loading a module.

    Without CAP_NET_ADMIN only the allowed list; with it, any registered (available) one. A name that
    is neither would make the kernel load a module (root) or refuse (EPERM/ENOENT) in every endpoint.
    """
    with open(AVAILABLE_CC if os.geteuid() == 0 else ALLOWED_CC) as f:
        return frozenset(f.read().split())


def check_socket_options(cfg: TestConfig) -> None:
    """VdevperfError, before anything is built, if the kernel will not take -K's algorithm."""
    if cfg.congestion_control is None:
        return
    usable = usable_congestion_controls()
    if cfg.congestion_control not in usable:
        names, cc = ", ".join(sorted(usable)), cfg.congestion_control
        raise VdevperfError("-K", f"congestion control '{cc}' is not loaded here; use one of {names}")


def _set_tcp_options(sock: socket.socket, cfg: TestConfig) -> None:
    # On the listener too: accepted sockets inherit both, which TCP_CRR's per-connection sockets rely on.
    if sock.type != socket.SOCK_STREAM:
        return
    if cfg.congestion_control is not None:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, cfg.congestion_control.encode())
    if cfg.nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _socket_facts(sock: socket.socket) -> dict[str, int | str]:
    """Effective socket settings worth keeping with a result (the kernel doubles SO_*BUF)."""
    facts: dict[str, int | str] = {
        "sndbuf_bytes": sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        "rcvbuf_bytes": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
    }
    if sock.type == socket.SOCK_STREAM:
        raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16)
        facts["congestion_control"] = raw.split(b"\0", 1)[0].decode()
        facts["nodelay"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    return facts


def _drive(channel: Channel, ctx: LoopContext, loop: Loop, cpu_wanted: int | None, facts: dict[str, int | str]) -> None:
    """Report readiness, wait for the common start, run the loop until it ends or is stopped."""
    ready: dict[str, object] = {
        "event": "ready",
        "placement": endpoint.placement(cpu_wanted),
        "socket": facts,
        "engine": engine_of(loop, ctx),
    }
    if ctx.sock is not None:
        ready["fd"] = ctx.sock.fileno()  # for the parent to borrow (load.borrowed)
    channel.send(ready)
    channel.wait_go()
    try:
        loop(ctx)
    except StopLoad:
        pass
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # a late stop must not break the report
    if ctx.sock is not None:
        ctx.sock.close()
    channel.send({"event": "done"})


def _native(cfg: TestConfig) -> bool:
    """True if the run's loops may be the native ones: its engine is "native" and they built (a remote
    server's config says "native", its default, whatever the client's is)."""
    return cfg.engine == "native" and native.missing() is None


def server_socket(tdef: TestDef, side: Side, family: int, cfg: TestConfig) -> socket.socket:
    """A flow's server socket, created inside the server's namespace (sockets keep their netns)."""
    kind = _kind(tdef)
    with netns.entered_path(side.netns_path):
        sock = socket.socket(family, kind)
    try:
        _set_buffers(sock, cfg.server_sndbuf, cfg.server_rcvbuf)
        _set_tcp_options(sock, cfg)
        sock.bind((side.address, 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def server_role(
    tdef: TestDef, sock: socket.socket, cfg: TestConfig, shared: Counters, index: int, admit: Admit | None = None
) -> endpoint.RoleBody:
    """The body of a flow's server endpoint; ``admit`` (remote sessions) picks the data socket to serve."""

    def body(channel: Channel) -> None:
        if admit is not None:
            data = admit(sock)
        elif sock.type == socket.SOCK_STREAM and not tdef.traits.per_connection:
            data, _ = sock.accept()
        else:
            data = sock
        if data is not sock:
            sock.close()
        ctx = LoopContext(data, cfg, shared.slots(index), shared.hist(index), native=_native(cfg))
        _drive(channel, ctx, tdef.server_loop, cfg.server_cpu, _socket_facts(data))

    return body


def client_role(
    tdef: TestDef,
    address: tuple[str, int],
    family: int,
    cfg: TestConfig,
    shared: Counters,
    index: int,
    greet: Greet | None,
) -> endpoint.RoleBody:
    """The body of a flow's client endpoint: connect to ``address`` (greeting first, if asked) and run."""
    kind = _kind(tdef)

    def new_socket() -> socket.socket:
        sock = socket.socket(family, kind)
        _set_buffers(sock, cfg.client_sndbuf, cfg.client_rcvbuf)
        _set_tcp_options(sock, cfg)
        return sock

    def connect() -> socket.socket:
        sock = new_socket()
        sock.connect(address)
        return sock

    def body(channel: Channel) -> None:
        ctx = LoopContext(None, cfg, shared.slots(index), shared.hist(index), native=_native(cfg))
        if tdef.traits.per_connection:
            ctx.connect = connect
            ctx.peer = (family, *address)
            with new_socket() as probe:
                facts = _socket_facts(probe)
        else:
            ctx.sock = sock = new_socket()
            sock.settimeout(SETUP_TIMEOUT_S)
            sock.connect(address)
            if greet is not None:
                greet(sock)  # before the loop: the loop itself never sees the greeting
            sock.settimeout(None)
            if tdef.traits.udp and tdef.traits.latency:
                # At the socket level, not Python's settimeout: that would poll() before every recv.
                timeval = struct.pack("ll", int(UDP_RR_TIMEOUT_S), int(UDP_RR_TIMEOUT_S % 1 * 1e6))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            facts = _socket_facts(sock)
        _drive(channel, ctx, tdef.client_loop, cfg.client_cpu, facts)

    return body
