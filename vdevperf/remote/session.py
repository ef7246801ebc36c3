"""One control connection on the server: handshake, then tests, until the client leaves or a limit ends it.

States and how long each may last:
  handshake  hello and auth within ``handshake_timeout_s`` of the accept
  idle       authenticated, between tests: the next request within ``idle_timeout_s``
  prepared   endpoints forked, waiting for ``start`` (and the data connections): SETUP_TIMEOUT_S
  running    marks and the stop within warm-up + duration + ``grace_s`` of the start
and the whole session within ``max_session_s`` of its authentication (a test
that would end past it is refused), so that no client keeps its slot for
ever. Every request is checked against the state; anything else, a limit, a
bad message or a timeout ends the session with one ``error`` message. However
the session ends, its endpoint processes are killed by PID before its
thread returns. Nothing a client sends names a file or a command: a test
request only picks a test and its sizes, from protocol.CONFIG.

A connection that takes the server's challenge and does not answer it with
a valid proof has failed to authenticate: its address backs off (limits.py),
and a wrong proof is answered only after that delay.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vdevperf.load.roles import SETUP_TIMEOUT_S
from vdevperf.model import TestConfig
from vdevperf.remote import protocol
from vdevperf.remote.admission import normalized
from vdevperf.remote.limits import AuthBackoff, EndpointBudget, backing_off
from vdevperf.remote.protocol import CLIENT_TYPES, PeerGone, PeerTimeout, RemoteError
from vdevperf.remote.serving import ServerRun

# How long a reply may take to leave: a client that reads nothing for this long is gone.
SEND_TIMEOUT_S = 5.0
# At the end of a session: how long, and how much, to read what the client still sends.
LINGER_S = 0.5
LINGER_BYTES = 2 * protocol.MAX_FRAME
# The longest a wrong proof waits for its answer: below a client's reply timeout (client.py).
FAILURE_REPLY_DELAY_MAX_S = 3.0


@dataclass(frozen=True)
class SessionLimits:
    """What a server allows each session."""

    max_duration_s: float
    max_flows: int
    idle_timeout_s: float
    handshake_timeout_s: float
    grace_s: float
    max_session_s: float


@dataclass(eq=False)
class Session:
    """The server's side of one control connection; ``key``: its address as limits.py counts it."""

    conn: socket.socket
    label: str
    key: str
    token: bytes = field(repr=False)
    limits: SessionLimits
    facts: dict
    log: Callable[[str], None]
    backoff: AuthBackoff
    budget: EndpointBudget
    netns_path: str | None = None
    accepted: float = field(default_factory=time.monotonic)
    run: ServerRun | None = None
    # Set from other threads: the slot went to a newer connection, or the server is closing.
    dropped: bool = False
    interrupted: bool = False

    def __post_init__(self) -> None:
        local, peer = self.conn.getsockname(), self.conn.getpeername()
        self.local_address = normalized(local[0])
        self.peer_address = normalized(peer[0])
        self.ip_version = 6 if ":" in self.local_address else 4
        self.ends_at = math.inf
        self.software = ""
        self._wake = threading.Event()

    # ---- messages

    def _send(self, kind: str, **fields: object) -> None:
        frame = protocol.encode(kind, protocol.MAX_REPLY_FRAME, **fields)
        protocol.send(self.conn, frame, time.monotonic() + SEND_TIMEOUT_S)

    def _receive(
        self, deadline: float, expected: tuple[str, ...], on_timeout: RemoteError, code: str = "protocol"
    ) -> dict:
        try:
            message = protocol.receive(self.conn, deadline, CLIENT_TYPES)
        except PeerTimeout:
            raise on_timeout from None
        except protocol.VersionMismatch as exc:
            raise RemoteError(
                "refused",
                f"protocol version mismatch: server speaks protocol {protocol.VERSION}, client sent {exc.theirs}",
                code="version",
            ) from None
        if message["type"] not in expected:
            wanted = " or ".join(f"'{kind}'" for kind in expected)
            raise RemoteError("refused", f"expected {wanted}, got '{message['type']}'", code=code)
        return message

    # ---- handshake

    def handshake(self) -> None:
        """Prove the token, then check the client's proof; RemoteError (to answer) unless it holds the token."""
        deadline = self.accepted + self.limits.handshake_timeout_s
        late = RemoteError("refused", f"no handshake within {self.limits.handshake_timeout_s:g} s")
        hello = self._receive(deadline, ("hello",), late)
        client_nonce = bytes.fromhex(hello["client_nonce"])
        server_nonce = secrets.token_bytes(protocol.NONCE_BYTES)
        self._send(
            "challenge",
            server_nonce=server_nonce.hex(),
            mac=protocol.server_mac(self.token, client_nonce, server_nonce).hex(),
        )
        try:
            auth = self._receive(deadline, ("auth",), late, code="auth")
        except RemoteError as exc:
            self._failed(
                "no proof before its slot went to a newer connection" if self.dropped else f"no proof ({exc.why})"
            )
            raise
        wait = self.backoff.remaining(self.key, time.monotonic())
        if wait > 0:
            # Another connection of this address failed meanwhile: one guess per back-off.
            raise RemoteError("refused", backing_off(wait), code="busy")
        if not protocol.proofs_match(auth["mac"], protocol.client_mac(self.token, server_nonce, client_nonce)):
            delay = self._failed("wrong proof")
            self._wake.wait(min(delay, FAILURE_REPLY_DELAY_MAX_S))
            raise RemoteError("refused", "authentication failed: the client's token is not this server's", code="auth")
        self.backoff.succeeded(self.key)
        self.software = hello["software"]

    def _failed(self, how: str) -> float:
        if self.interrupted:
            return 0.0  # the server is closing: that is no failure of the client's
        delay = self.backoff.failed(self.key, time.monotonic())
        self.log(
            f"{self.label}: authentication failed: {how}" + (f"; {self.key} backs off for {delay:g} s" if delay else "")
        )
        return delay

    def welcome(self) -> None:
        """Admit the authenticated client: its session's clock starts now."""
        self.ends_at = time.monotonic() + self.limits.max_session_s
        self._send(
            "welcome",
            server=self.facts,
            limits={
                "max_duration_s": self.limits.max_duration_s,
                "max_flows": self.limits.max_flows,
                "idle_timeout_s": self.limits.idle_timeout_s,
                "max_session_s": self.limits.max_session_s,
            },
        )
        self.log(f"{self.label}: authenticated ({self.software})")

    # ---- requests

    def serve(self) -> None:
        """Answer test requests until the client says bye or closes the connection, or its time is up."""
        idle = self.limits.idle_timeout_s
        silent = RemoteError("refused", f"idle for {idle:g} s: session closed", code="idle")
        over = RemoteError(
            "refused",
            f"session reached this server's --max-session-time of "
            f"{self.limits.max_session_s:g} s; connect again to go on",
            code="limit",
        )
        while True:
            deadline = time.monotonic() + idle
            if self.ends_at < deadline:
                deadline, silent = self.ends_at, over
            try:
                request = self._receive(deadline, ("test", "bye"), silent)
            except PeerGone as exc:
                if exc.why == "closed":
                    return  # between tests, closing is as good as bye
                raise
            if request["type"] == "bye":
                return
            self._test(protocol.config_from_wire(request["config"]))

    def _check(self, cfg: TestConfig) -> None:
        total = cfg.duration_s + cfg.warmup_s
        if total > self.limits.max_duration_s:
            raise RemoteError(
                "refused",
                f"test of {total:g} s ({cfg.duration_s:g} s + {cfg.warmup_s:g} s warm-up) "
                f"exceeds this server's --max-duration of {self.limits.max_duration_s:g} s",
                code="limit",
            )
        left = self.ends_at - time.monotonic()
        if total > left:
            raise RemoteError(
                "refused",
                f"test of {total:g} s would end past this session's --max-session-time "
                f"of {self.limits.max_session_s:g} s ({max(left, 0):.1f} s left); "
                "connect again for a new session",
                code="limit",
            )
        if cfg.flows > self.limits.max_flows:
            raise RemoteError(
                "refused", f"{cfg.flows} flows exceed this server's limit of {self.limits.max_flows}", code="limit"
            )
        if cfg.ip_version != self.ip_version:
            raise RemoteError(
                "refused",
                f"-{cfg.ip_version}: the control connection is IPv{self.ip_version}, and "
                "data flows take the control connection's path",
                code="bad-request",
            )
        allowed = os.sched_getaffinity(0)
        if cfg.server_cpu is not None and cfg.server_cpu not in allowed:
            raise RemoteError(
                "refused",
                f"-T: CPU {cfg.server_cpu} is not available on the server "
                f"(it has {', '.join(map(str, sorted(allowed)))})",
                code="bad-request",
            )

    def _test(self, cfg: TestConfig) -> None:
        self._check(cfg)
        try:
            self._run_test(cfg)
        except PeerGone as exc:
            raise PeerGone(f"{exc.why} during {cfg.test}") from None
        self.log(f"{self.label}: {cfg.test} done")

    def _run_test(self, cfg: TestConfig) -> None:
        if not self.budget.claim(cfg.flows):
            raise RemoteError(
                "refused",
                f"busy: running its maximum of {self.budget.limit} endpoint processes; try again later",
                code="busy",
            )
        self.log(f"{self.label}: {cfg.test}, {cfg.flows} flow(s), {cfg.duration_s:g} s + {cfg.warmup_s:g} s warm-up")
        self.run = run = ServerRun(cfg, self.local_address, self.peer_address, self.netns_path)
        try:
            try:
                ports, token = run.open()
            except OSError as exc:
                raise RemoteError("refused", f"cannot open data sockets: {exc.strerror or exc}", code="load") from None
            self._send("ready", ports=ports, data_token=token.hex())
            late = RemoteError("refused", f"no 'start' within {SETUP_TIMEOUT_S:g} s")
            if self._receive(time.monotonic() + SETUP_TIMEOUT_S, ("start", "bye"), late)["type"] == "bye":
                raise PeerGone("said bye")
            self._send("started", endpoints=run.start())
            allowed = cfg.warmup_s + cfg.duration_s
            overrun = RemoteError(
                "refused",
                f"the test ran past its {allowed:g} s and {self.limits.grace_s:g} s of "
                "grace without a stop: its endpoints were killed",
                code="duration",
            )
            end = time.monotonic() + allowed + self.limits.grace_s
            while True:
                request = self._receive(end, ("mark", "stop", "bye"), overrun)
                if request["type"] == "bye":
                    raise PeerGone("said bye")  # the client gave up on the test (it failed on its side)
                if request["type"] == "mark":
                    self._send("marked", **run.mark())
                    continue
                self._send("stopped", endpoints=run.stop())
                break
        finally:
            self.run = None
            run.close()
            self.budget.release(cfg.flows)

    # ---- endings

    def refuse(self, error: RemoteError, quiet: bool = False) -> None:
        """Tell the client why its session ends (if it still listens), and log it unless ``quiet``."""
        if isinstance(error, PeerGone):
            if not quiet:
                self.log(f"{self.label}: client went away ({error.why})")
            return
        if not quiet:
            self.log(f"{self.label}: refused: {error.code}: {error.why}")
        try:
            self._send("error", code=error.code, message=error.why[:512])
        except RemoteError:
            pass

    def drop(self) -> None:
        """From another thread: end the handshake, its slot went to a newer connection. Shutting down
        the reading side wakes a blocked read (it sees the end) and leaves the error reply possible."""
        self.dropped = True
        self._shut(socket.SHUT_RD)

    def interrupt(self) -> None:
        """Wake the session's thread from another one: its next read sees the connection end."""
        self.interrupted = True
        self._shut(socket.SHUT_RDWR)

    def _shut(self, how: int) -> None:
        self._wake.set()
        try:
            self.conn.shutdown(how)
        except OSError:
            pass

    def close(self) -> None:
        """Kill this session's endpoints and close the connection, its unread input read first."""
        run, self.run = self.run, None
        if run is not None:
            run.close()
        try:
            self.conn.shutdown(socket.SHUT_WR)
            # Closing with unread input would reset the connection, and a reset can destroy the
            # error message before the client reads it: read what is in flight first, boundedly.
            deadline = time.monotonic() + LINGER_S
            left = LINGER_BYTES
            while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                self.conn.settimeout(remaining)
                chunk = self.conn.recv(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass
        self.conn.close()
