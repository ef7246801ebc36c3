"""The vdevperf server: accepts control connections and serves each in its own thread, within limits.

Limits, so that no client can wedge it or make it grow, and no stranger can
keep clients out (limits.py has the rules):
- handshakes: at most ``max_pending`` connections authenticating at once, and
  ``max_pending_per_address`` from one address; a new connection that finds
  a cap full takes the slot of the oldest pending handshake, which is told
  'busy' and closed; each handshake within ``handshake_timeout_s``;
- failed authentications: the address backs off (``auth_backoff_s``,
  doubling per failure), its new connections turned away meanwhile;
- sessions: at most ``max_clients`` authenticated (one more is answered
  'busy' once it has authenticated, so strangers learn nothing), each for at
  most ``max_session_s``, idle at most ``idle_timeout_s``;
- tests: a cap on each test's duration and flows, and on the endpoint
  processes of all sessions together (``max_endpoints``);
- frames of at most protocol.MAX_FRAME bytes, read into fixed buffers.
Each session forks its own endpoint processes and kills them by PID when it
ends, however it ends; ``close`` ends every session. The server runs no
command and opens no file on a client's request.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vdevperf.errors import VdevperfError
from vdevperf.load.endpoint import FINISH_TIMEOUT_S
from vdevperf.load.roles import SETUP_TIMEOUT_S
from vdevperf.measure import cpu
from vdevperf.measure.env import environment
from vdevperf.remote import protocol
from vdevperf.remote.admission import normalized
from vdevperf.remote.limits import AuthBackoff, EndpointBudget, HandshakeSlots, Tally, address_key, backing_off
from vdevperf.remote.protocol import MAX_CPUS, MAX_FLOWS, MAX_SECONDS, PeerGone, RemoteError
from vdevperf.remote.session import Session, SessionLimits
from vdevperf.remote.token import check_token
from vdevperf.topology import netns

DEFAULT_PORT = 12866
# accept() failures that mean "not now" rather than "broken": wait a little and go on.
_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO, errno.EPERM}


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass(frozen=True)
class ServerConfig:
    """How a server listens and what it allows; ``netns_path`` runs it in a namespace from outside."""

    token: bytes = field(repr=False)
    bind: str = "::"
    port: int = DEFAULT_PORT
    max_duration_s: float = 120.0
    max_clients: int = 4
    idle_timeout_s: float = 60.0
    max_flows: int = 32
    handshake_timeout_s: float = 5.0
    max_pending: int = 64
    max_pending_per_address: int = 8
    # Back-off after an address's first failed authentication; doubles with each further one.
    auth_backoff_s: float = 1.0
    max_endpoints: int = 64
    max_session_s: float = 600.0
    # How long past a test's warm-up + duration its client may take to send the stop.
    grace_s: float = 3.0
    netns_path: str | None = None

    def __post_init__(self) -> None:
        try:
            check_token(self.token)
        except ValueError as exc:
            raise ValueError(f"--token-file: {exc}") from None
        try:
            ipaddress.ip_address(self.bind)
        except ValueError:
            raise ValueError(f"--bind: '{self.bind}' is not an IP address") from None
        _check(0 <= self.port <= 65535, "--port: must be 0-65535 (0: any free port)")
        _check(0 < self.max_duration_s <= MAX_SECONDS, f"--max-duration: must be 0-{MAX_SECONDS:g} s")
        _check(1 <= self.max_clients <= 1024, "--max-clients: must be 1-1024")
        _check(0 < self.idle_timeout_s <= MAX_SECONDS, f"--idle-timeout: must be 0-{MAX_SECONDS:g} s")
        _check(1 <= self.max_flows <= MAX_FLOWS, f"max_flows: must be 1-{MAX_FLOWS}")
        _check(self.handshake_timeout_s > 0 and self.grace_s > 0, "timeouts must be positive")
        _check(1 <= self.max_pending <= 1024, "--max-pending: must be 1-1024")
        _check(
            1 <= self.max_pending_per_address <= self.max_pending,
            "--max-pending-per-address: must be 1 to --max-pending",
        )
        _check(0 <= self.auth_backoff_s <= 60, "--auth-backoff: must be 0-60 s (0: none)")
        _check(1 <= self.max_endpoints <= 4096, "--max-endpoints: must be 1-4096")
        _check(
            self.max_duration_s <= self.max_session_s <= MAX_SECONDS,
            f"--max-session-time: must be from --max-duration ({self.max_duration_s:g} s) to {MAX_SECONDS:g} s",
        )


def address_label(address: tuple) -> str:
    """HOST:PORT of a socket address, IPv6 in brackets."""
    host = normalized(address[0])
    return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"


def server_facts() -> dict:
    """What a server tells its clients about itself (stored with their results)."""
    env = environment()
    return {
        "software": f"vdevperf {env['packages'].get('vdevperf') or 'unknown'}",
        "hostname": str(env["hostname"])[:255],
        "kernel": str(env["kernel"])[:255],
        "cpu_model": None if env["cpu_model"] is None else str(env["cpu_model"])[:255],
        "cpu_count": len(cpu.snapshot()),
    }


class Server:
    """A listening vdevperf server: ``bind``, then ``serve_forever`` until ``close``."""

    def __init__(self, config: ServerConfig, log: Callable[[str], None] = lambda line: None) -> None:
        self.config = config
        self.log = log
        self.limits = SessionLimits(
            max_duration_s=config.max_duration_s,
            max_flows=min(config.max_flows, config.max_endpoints),
            idle_timeout_s=config.idle_timeout_s,
            handshake_timeout_s=config.handshake_timeout_s,
            grace_s=config.grace_s,
            max_session_s=config.max_session_s,
        )
        self._pending: HandshakeSlots[Session] = HandshakeSlots(config.max_pending, config.max_pending_per_address)
        self._backoff = AuthBackoff(config.auth_backoff_s)
        self._budget = EndpointBudget(config.max_endpoints)
        self._clients = threading.BoundedSemaphore(config.max_clients)
        self._lock = threading.Lock()
        self._sessions: set[Session] = set()
        self._threads: set[threading.Thread] = set()
        self._active = 0
        self._closing = False
        self._listener: socket.socket | None = None
        self._facts: dict = {}
        # Floods would repeat these lines without end: each is logged at most once a second, with a count.
        self._dropped_tally, self._backoff_tally = Tally(), Tally()

    @property
    def active(self) -> int:
        """Authenticated sessions now."""
        return self._active

    def bind(self) -> str:
        """Open the listening socket; returns the address it listens on (HOST:PORT)."""
        what = "vdevperf server"
        self._facts = server_facts()
        if self._facts["cpu_count"] > MAX_CPUS:
            raise RemoteError(
                what, f"this machine has {self._facts['cpu_count']} CPUs; the protocol reports at most {MAX_CPUS}"
            )
        host = self.config.bind
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        try:
            with netns.entered_path(self.config.netns_path):
                sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            if host != "::":
                raise RemoteError(f"--bind {host}", exc.strerror or str(exc)) from None
            # No IPv6 in this kernel: the default falls back to every IPv4 address.
            host, family = "0.0.0.0", socket.AF_INET
            with netns.entered_path(self.config.netns_path):
                sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 clients too
            sock.bind((host, self.config.port))
            sock.listen(self.config.max_pending + self.config.max_clients)
        except OSError as exc:
            sock.close()
            raise RemoteError(f"--bind {host} --port {self.config.port}", exc.strerror or str(exc)) from None
        self._listener = sock
        return address_label(sock.getsockname())

    def serve_forever(self) -> None:
        """Accept connections until ``close``; each gets a thread of its own."""
        listener = self._listener
        if listener is None:
            raise RemoteError("vdevperf server", "serve_forever() before bind()")
        while True:
            try:
                conn, address = listener.accept()
            except OSError as exc:
                if self._closing:
                    return
                if exc.errno not in _TRANSIENT:
                    raise RemoteError("vdevperf server", f"accept failed: {exc.strerror or exc}") from None
                self.log(f"accept failed ({exc.strerror}); retrying")
                time.sleep(0.1)
                continue
            self._start(conn, address)

    def _start(self, conn: socket.socket, address: tuple) -> None:
        label, key, now = address_label(address), address_key(address[0]), time.monotonic()
        if self._closing:
            _turn_away(conn, "busy: the server is shutting down")
            return
        wait = self._backoff.remaining(key, now)
        if wait > 0:
            if count := self._backoff_tally.add(now):
                self.log(
                    f"{label}: turned away: {key} backs off after a failed authentication "
                    f"({count} connection(s) turned away since the last such line)"
                )
            _turn_away(conn, backing_off(wait))
            return
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # marks are small and time-critical
            session = Session(
                conn,
                label,
                key,
                self.config.token,
                self.limits,
                self._facts,
                self.log,
                self._backoff,
                self._budget,
                self.config.netns_path,
            )
        except OSError:  # reset before it could be served
            conn.close()
            return
        for oldest in self._pending.take(session, key):
            oldest.drop()
            if count := self._dropped_tally.add(now):
                self.log(
                    f"{oldest.label}: dropped: its handshake slot went to a newer connection "
                    f"({count} dropped since the last such line; at most {self.config.max_pending} pending, "
                    f"{self.config.max_pending_per_address} per address)"
                )
        thread = threading.Thread(target=self._serve, args=(session,), name=f"vdevperf {label}", daemon=True)
        with self._lock:
            self._threads.add(thread)
            self._sessions.add(session)
        try:
            thread.start()
        except RuntimeError:  # no more threads: this connection waits for none
            self._pending.leave(session)
            self._forget(session, thread)
            _turn_away(conn, "busy: the server cannot take more connections now")

    def _serve(self, session: Session) -> None:
        claimed = False
        try:
            try:
                session.handshake()
            finally:
                pending = self._pending.leave(session)
            if not pending:
                session.dropped = True  # displaced just as it finished: answered below
                raise PeerGone("dropped")
            if not self._clients.acquire(blocking=False):
                raise RemoteError(
                    "refused",
                    f"busy: serving its maximum of {self.config.max_clients} client(s); try again later",
                    code="busy",
                )
            claimed = True
            with self._lock:
                self._active += 1
            session.welcome()
            session.serve()
        except RemoteError as exc:
            if session.dropped:
                session.refuse(
                    RemoteError(
                        "refused", "busy: too many connections are authenticating; try again later", code="busy"
                    ),
                    quiet=True,
                )
            else:
                session.refuse(exc)
        except VdevperfError as exc:  # the load failed (an endpoint, a data connection)
            session.refuse(RemoteError("refused", str(exc), code="load"))
        except Exception as exc:
            # A bug must cost one session, never the server; the log says what it was.
            self.log(f"{session.label}: internal error: {type(exc).__name__}: {exc}")
            session.refuse(RemoteError("refused", "internal error in the server", code="internal"))
        finally:
            # The slot is free before the client sees the connection end: it may come back at once.
            if claimed:
                with self._lock:
                    self._active -= 1
                self._clients.release()
            session.close()
            self._forget(session, threading.current_thread())

    def _forget(self, session: Session, thread: threading.Thread) -> None:
        with self._lock:
            self._sessions.discard(session)
            self._threads.discard(thread)

    def close(self) -> None:
        """Stop accepting, end every session (their endpoints die with them) and wait for their threads."""
        self._closing = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept()
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            sessions, threads = list(self._sessions), list(self._threads)
        for session in sessions:
            session.interrupt()
        # A session may be inside a start or a stop: those end within their own timeouts.
        deadline = time.monotonic() + SETUP_TIMEOUT_S + FINISH_TIMEOUT_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _turn_away(conn: socket.socket, message: str) -> None:
    """Answer 'busy' with ``message`` without waiting for the peer, and close."""
    try:
        conn.setblocking(False)
        conn.send(protocol.encode("error", code="busy", message=message))
        conn.shutdown(socket.SHUT_WR)
        # What the client sent already (its hello) is read, so that closing does not reset the
        # connection under the reply; nothing is waited for.
        for _ in range(4):
            if not conn.recv(65536):
                break
    except OSError:
        pass
    conn.close()


__all__ = ["DEFAULT_PORT", "Server", "ServerConfig", "server_facts", "address_label", "MAX_FLOWS"]
