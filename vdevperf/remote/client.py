"""The client's side of a remote session: connect, authenticate, and drive the server half of tests.

A RemoteSession is a server half (load.runner.ServerHalf) like a local
LocalServer: it opens the server endpoints on the server (``test``),
releases them (``start``), asks for the server's readings at each sample
(``mark``) and ends them (``stop``). Every reply is validated by protocol.py; a refusal
from the server becomes one RemoteError naming the server, with the
server's own words.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from vdevperf.counters import SLOTS
from vdevperf.load.endpoint import FINISH_TIMEOUT_S
from vdevperf.load.roles import SETUP_TIMEOUT_S, Greet
from vdevperf.measure.endpoints import Finished, Ready
from vdevperf.measure.watch import Reading
from vdevperf.model import TestConfig
from vdevperf.remote import admission, protocol
from vdevperf.remote.protocol import SERVER_TYPES, PeerGone, PeerTimeout, ProtocolError, RemoteError, VersionMismatch
from vdevperf.topology import netns

CONNECT_TIMEOUT_S = 5.0
# How long a reply may take beyond the work the server does for it.
REPLY_TIMEOUT_S = 5.0
SOFTWARE = "vdevperf client"


@dataclass(frozen=True)
class RemoteTarget:
    """A vdevperf server to run against; ``netns_path``: the namespace the client side runs in."""

    host: str
    port: int
    token: bytes = field(repr=False)
    netns_path: str | None = None

    @property
    def label(self) -> str:
        """HOST:PORT, IPv6 in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """HOST, HOST:PORT or [IPV6]:PORT as (host, port); ValueError if malformed."""
    host, port = text, str(default_port)
    if text.startswith("["):
        inner, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"'{text}' is not HOST:PORT or [IPV6]:PORT")
        host, port = inner, rest[1:] or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{text}' is not HOST:PORT or [IPV6]:PORT")
    return host, int(port)


class RemoteSession:
    """An authenticated control connection to a vdevperf server (a runner.ServerHalf)."""

    def __init__(self, sock: socket.socket, label: str) -> None:
        self.sock = sock
        self.what = f"server {label}"
        self.facts: dict = {}
        self.limits: dict = {}
        self._cfg: TestConfig | None = None

    @classmethod
    def connect(cls, target: RemoteTarget, ip_version: int) -> RemoteSession:
        """Connect to ``target`` over IPv``ip_version`` and authenticate both ways."""
        what = f"server {target.label}"
        family = socket.AF_INET if ip_version == 4 else socket.AF_INET6
        try:
            address = socket.getaddrinfo(target.host, target.port, family, socket.SOCK_STREAM)[0][4]
        except socket.gaierror as exc:
            raise RemoteError(what, f"has no IPv{ip_version} address ({exc.strerror})") from None
        with netns.entered_path(target.netns_path):
            sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # marks are small and time-critical
            sock.settimeout(CONNECT_TIMEOUT_S)
            try:
                sock.connect(address)
            except OSError as exc:
                raise RemoteError(what, f"cannot connect: {exc.strerror or exc}") from None
            session = cls(sock, target.label)
            session._handshake(target.token)
        except BaseException:
            sock.close()
            raise
        return session

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- messages

    def _send(self, kind: str, **fields: object) -> None:
        try:
            protocol.send(
                self.sock, protocol.encode(kind, limit=protocol.MAX_FRAME, **fields), time.monotonic() + REPLY_TIMEOUT_S
            )
        except PeerGone as exc:
            raise RemoteError(self.what, f"control connection lost ({exc.why})") from None
        except PeerTimeout:
            raise RemoteError(self.what, "stopped reading the control connection") from None

    def _receive(self, kind: str, timeout_s: float) -> dict:
        try:
            message = protocol.receive(self.sock, time.monotonic() + timeout_s, SERVER_TYPES, protocol.MAX_REPLY_FRAME)
        except VersionMismatch as exc:
            raise RemoteError(
                self.what,
                f"protocol version mismatch: this client speaks protocol "
                f"{protocol.VERSION}, the server sent {exc.theirs}",
                code="version",
            ) from None
        except PeerGone as exc:
            raise RemoteError(self.what, f"closed the control connection ({exc.why})") from None
        except PeerTimeout:
            raise RemoteError(self.what, f"no '{kind}' reply within {timeout_s:g} s") from None
        except ProtocolError as exc:
            raise RemoteError(self.what, f"sent a malformed message: {exc.why}") from None
        if message["type"] == "error":
            raise RemoteError(self.what, message["message"], code=message["code"])
        if message["type"] != kind:
            raise RemoteError(self.what, f"sent '{message['type']}' where '{kind}' was due")
        return message

    def _handshake(self, token: bytes) -> None:
        client_nonce = secrets.token_bytes(protocol.NONCE_BYTES)
        self._send("hello", client_nonce=client_nonce.hex(), software=SOFTWARE)
        challenge = self._receive("challenge", REPLY_TIMEOUT_S)
        server_nonce = bytes.fromhex(challenge["server_nonce"])
        # The server proves itself first: to one that cannot, this client reveals nothing.
        if not protocol.proofs_match(challenge["mac"], protocol.server_mac(token, client_nonce, server_nonce)):
            raise RemoteError(
                self.what,
                "authentication failed: it did not prove it holds this client's token "
                "(the tokens differ, or it is not the vdevperf server expected)",
                code="auth",
            )
        self._send("auth", mac=protocol.client_mac(token, server_nonce, client_nonce).hex())
        welcome = self._receive("welcome", REPLY_TIMEOUT_S)
        self.facts, self.limits = welcome["server"], welcome["limits"]

    def _per_flow(self, items: list, what: str) -> list:
        if self._cfg is None or len(items) != self._cfg.flows:
            raise RemoteError(
                self.what, f"sent {len(items)} {what} for a test of {self._cfg.flows if self._cfg else 0} flow(s)"
            )
        return items

    # ---- runner.ServerHalf

    def open(self, cfg: TestConfig) -> tuple[list[tuple[str, int]], Greet | None]:
        """Ask for the server endpoints of ``cfg``; per flow the address to connect to, and the greeting."""
        self._cfg = cfg
        self._send("test", config=protocol.config_to_wire(cfg))
        ready = self._receive("ready", REPLY_TIMEOUT_S)
        host = self.sock.getpeername()[0]  # data takes the control connection's path
        ports = self._per_flow(ready["ports"], "ports")
        greet = admission.greeter(bytes.fromhex(ready["data_token"]), SETUP_TIMEOUT_S)
        return [(host, port) for port in ports], greet

    def start(self) -> list[Ready]:
        """Release the server endpoints once they are ready; per flow their pid, placement and socket."""
        self._send("start")
        started = self._receive("started", SETUP_TIMEOUT_S + REPLY_TIMEOUT_S)["endpoints"]
        return [Ready.from_json(doc) for doc in self._per_flow(started, "endpoints")]

    def edge(self) -> None:
        """Nothing to read at the window's edges: the protocol carries no migrations of the server's."""

    def mark(self) -> Callable[[], Reading]:
        """Ask for the server's reading now; the returned function waits for it."""
        self._send("mark")

        def reading() -> Reading:
            marked = self._receive("marked", REPLY_TIMEOUT_S)
            counters = self._per_flow(marked["counters"], "counter sets")
            if any(len(c) != len(SLOTS) for c in counters):
                raise RemoteError(self.what, "sent counters of another layout")
            return Reading(
                t_s=marked["t_s"],
                cpu=marked["cpu"],
                counters=counters,
                proc_cpu_s=self._per_flow(marked["proc_cpu_s"], "CPU times"),
            )

        return reading

    def stop(self) -> list[Finished]:
        """End the server endpoints; per flow where each ran and its final counters."""
        self._send("stop")
        stopped = self._receive("stopped", FINISH_TIMEOUT_S + REPLY_TIMEOUT_S)["endpoints"]
        return [Finished.from_json(doc) for doc in self._per_flow(stopped, "endpoint reports")]

    def close(self) -> None:
        """Say bye (the server then ends the session at once) and close."""
        try:
            protocol.send(self.sock, protocol.encode("bye"), time.monotonic() + 1.0)
        except RemoteError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
