"""The control protocol between a vdevperf client and a vdevperf server: frames, messages, handshake.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON
holding one object. The length is checked before the body is read: frames
to the server carry at most MAX_FRAME bytes; frames from it up to
MAX_REPLY_FRAME (a large machine's per-CPU table). Every message is
``{"v": VERSION, "type": T, ...}`` and each type has a field spec here:
every field required, typed and bounded, no other key allowed. A message
with another ``v`` is a VersionMismatch whatever else it holds, so both sides
can say which versions met.

Handshake, mutual HMAC-SHA256 challenge-response in which the server proves
itself first (the token never travels):

    client -> hello{client_nonce}
    server -> challenge{server_nonce, mac: HMAC(token, "vdevperf/2 server" | client_nonce | server_nonce)}
    client    checks the server's mac; if it is wrong, closes without a proof of its own
    client -> auth{mac: HMAC(token, "vdevperf/2 client" | server_nonce | client_nonce)}
    server -> welcome{server, limits}

Both nonces are 32 fresh random bytes per connection, so a proof recorded on
one connection is worthless on the next, and the two labels (and the nonces'
order) keep a server's proof from passing as a client's. The client reveals
nothing that depends on the token to a server that has not proved it holds
it. Any client may obtain a server proof over a nonce of its choosing; that
gives no more than watching a real handshake does, a proof for no other
connection, and (with a token of at least 128 bits, token.py) no way to
find the token. Then, per test: test -> ready, start -> started, mark ->
marked (any number), stop -> stopped; bye ends the session.
Any failure is an ``error{code, message}`` and the end of the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import socket
import time
from dataclasses import dataclass

from vdevperf.counters import SLOTS
from vdevperf.errors import VdevperfError
from vdevperf.measure.cpu import FIELDS
from vdevperf.model import TestConfig, TestName

# 2: the server proves itself first (its mac moved from welcome to challenge); limits.max_session_s.
# 3: counters gained slots (zerocopy_sends, zerocopy_copied) and configs -K/-D/-Z: a v2 peer would
# read the counter list at the wrong offsets, so it is refused by version instead.
# 4: counters gained jitter_sum_ns (UDP jitter), and UDP_STREAM datagrams carry a stamp; same reason.
VERSION = 4
MAX_FRAME = 64 * 1024
MAX_REPLY_FRAME = 1024 * 1024
NONCE_BYTES = 32
MAC_BYTES = 32
DATA_TOKEN_BYTES = 16
MAX_FLOWS = 64
MAX_CPUS = 4096
# Largest -m/-M/-r size a server allocates per endpoint, and largest socket buffer it sets.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_SOCKBUF_BYTES = 256 * 1024 * 1024
MAX_SECONDS = 7 * 24 * 3600.0
_HEADER = 4

ERROR_CODES = (
    "version",
    "auth",
    "busy",
    "protocol",
    "bad-request",
    "limit",
    "idle",
    "duration",
    "load",
    "shutdown",
    "internal",
)
CLIENT_TYPES = frozenset({"hello", "auth", "test", "start", "mark", "stop", "bye"})
SERVER_TYPES = frozenset({"challenge", "welcome", "ready", "started", "marked", "stopped", "error"})


class RemoteError(VdevperfError):
    """A remote session failed: refused by the server, a broken message, a lost connection.

    ``code`` is the protocol's error code (ERROR_CODES) the server sends or sent.
    """

    def __init__(self, what: str, why: str, code: str = "protocol") -> None:
        super().__init__(what, why)
        self.code = code


class ProtocolError(RemoteError):
    """A frame or message broke the protocol: size, encoding, JSON, schema, order."""

    def __init__(self, why: str, code: str = "protocol") -> None:
        super().__init__("control message", why, code)


class VersionMismatch(ProtocolError):
    """The peer speaks another protocol version (``theirs``)."""

    def __init__(self, theirs: int) -> None:
        super().__init__(f"protocol version {theirs}, not {VERSION}", code="version")
        self.theirs = theirs


class PeerGone(RemoteError):
    """The peer closed or reset the connection."""

    def __init__(self, why: str) -> None:
        super().__init__("control connection", why)


class PeerTimeout(RemoteError):
    """The peer sent nothing, or not all of a frame, before the deadline."""

    def __init__(self) -> None:
        super().__init__("control connection", "timed out")


def _show(value: object) -> str:
    # Error messages reach logs and terminals: never echo much of what a peer sent, and
    # never walk a container (its nesting is the peer's choice).
    if isinstance(value, list | dict):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- field specs


@dataclass(frozen=True)
class Int:
    """An integer (not a bool) in lo..hi."""

    lo: int
    hi: int

    def check(self, value: object, where: str) -> int:
        """``value`` if valid, else ProtocolError naming ``where``."""
        if type(value) is not int or not self.lo <= value <= self.hi:
            raise ProtocolError(f"{where} must be an integer in {self.lo}..{self.hi}, not {_show(value)}")
        return value


@dataclass(frozen=True)
class Num:
    """A finite number (integer or float, not a bool) in lo..hi."""

    lo: float
    hi: float

    def check(self, value: object, where: str) -> float:
        """``value`` if valid, else ProtocolError naming ``where``."""
        if (
            type(value) not in (int, float)
            or not isinstance(value, int | float)  # the same test, for the type checker
            or (type(value) is float and not math.isfinite(value))
            or not self.lo <= value <= self.hi
        ):
            raise ProtocolError(f"{where} must be a number in {self.lo:g}..{self.hi:g}, not {_show(value)}")
        return value


@dataclass(frozen=True)
class Text:
    """A printable string of at most ``max_len`` characters, optionally one of ``choices``."""

    max_len: int
    choices: tuple[str, ...] = ()

    def check(self, value: object, where: str) -> str:
        """``value`` if valid, else ProtocolError naming ``where``."""
        if not isinstance(value, str) or len(value) > self.max_len or not value.isprintable():
            raise ProtocolError(f"{where} must be printable text of at most {self.max_len} characters")
        if self.choices and value not in self.choices:
            raise ProtocolError(f"{where} must be one of {', '.join(self.choices)}, not {_show(value)}")
        return value


@dataclass(frozen=True)
class Hex:
    """Exactly ``nbytes`` bytes as lowercase hex."""

    nbytes: int

    def check(self, value: object, where: str) -> str:
        """``value`` if valid, else ProtocolError naming ``where``."""
        if not isinstance(value, str) or not re.fullmatch(f"[0-9a-f]{{{2 * self.nbytes}}}", value):
            raise ProtocolError(f"{where} must be {self.nbytes} bytes as lowercase hex")
        return value


@dataclass(frozen=True)
class OneOf:
    """One of a few exact values (compared with their type: True is not 1)."""

    values: tuple

    def check(self, value: object, where: str) -> object:
        """``value`` if valid, else ProtocolError naming ``where``."""
        if not any(type(value) is type(v) and value == v for v in self.values):
            raise ProtocolError(f"{where} must be one of {', '.join(map(str, self.values))}, not {_show(value)}")
        return value


@dataclass(frozen=True)
class Maybe:
    """null, or what ``spec`` accepts."""

    spec: Spec

    def check(self, value: object, where: str) -> object:
        """``value`` if valid, else ProtocolError naming ``where``."""
        return None if value is None else self.spec.check(value, where)


@dataclass(frozen=True)
class Seq:
    """A list of lo..hi items, each what ``item`` accepts."""

    item: Spec
    lo: int
    hi: int

    def check(self, value: object, where: str) -> list:
        """``value`` if valid, else ProtocolError naming ``where``."""
        if not isinstance(value, list) or not self.lo <= len(value) <= self.hi:
            raise ProtocolError(f"{where} must be a list of {self.lo}..{self.hi} items")
        for i, v in enumerate(value):
            self.item.check(v, f"{where}[{i}]")
        return value


@dataclass(frozen=True)
class Record:
    """An object with exactly these keys (those in ``optional`` may be absent), each valid."""

    fields: dict[str, Spec]
    optional: frozenset[str] = frozenset()

    def check(self, value: object, where: str) -> dict:
        """``value`` if valid, else ProtocolError naming ``where``."""
        if not isinstance(value, dict):
            raise ProtocolError(f"{where} must be an object")
        unknown = [k for k in value if k not in self.fields]
        if unknown:
            raise ProtocolError(f"{where}: unknown key {_show(unknown[0])}")
        for key, spec in self.fields.items():
            if key in value:
                spec.check(value[key], f"{where}.{key}")
            elif key not in self.optional:
                raise ProtocolError(f"{where}: missing key '{key}'")
        return value


@dataclass(frozen=True)
class Table:
    """An object of at most ``hi`` entries whose keys are decimal numbers below 10^4."""

    value: Spec
    hi: int

    def check(self, value: object, where: str) -> dict:
        """``value`` if valid, else ProtocolError naming ``where``."""
        if not isinstance(value, dict) or len(value) > self.hi:
            raise ProtocolError(f"{where} must be an object of at most {self.hi} entries")
        for key, v in value.items():
            if not re.fullmatch(r"[0-9]{1,4}", key):
                raise ProtocolError(f"{where}: key {_show(key)} is not a CPU number")
            self.value.check(v, f"{where}.{key}")
        return value


Spec = Int | Num | Text | Hex | OneOf | Maybe | Seq | Record | Table

_COUNT = Int(0, 2**63 - 1)
_SECONDS = Num(0, 1e12)
_PID = Int(1, 2**31 - 1)
_CPU = Int(0, MAX_CPUS - 1)
_SIZE = Int(1, MAX_MESSAGE_BYTES)
_BUF = Maybe(Int(1, MAX_SOCKBUF_BYTES))

# The part of a TestConfig the server needs: the client keeps its own half (client CPU and
# buffers, interval, iterations) to itself.
CONFIG = Record(
    {
        "test": Text(16, tuple(t.value for t in TestName)),
        "duration_s": Num(0.001, MAX_SECONDS),
        "warmup_s": Num(0, MAX_SECONDS),
        "send_size": _SIZE,
        "recv_size": _SIZE,
        "request_size": _SIZE,
        "response_size": _SIZE,
        "ip_version": OneOf((4, 6)),
        "server_cpu": Maybe(_CPU),
        "flows": Int(1, MAX_FLOWS),
        "server_sndbuf": _BUF,
        "server_rcvbuf": _BUF,
    }
)

SERVER_FACTS = Record(
    {
        "software": Text(64),
        "hostname": Text(255),
        "kernel": Text(255),
        "cpu_model": Maybe(Text(255)),
        "cpu_count": Int(1, MAX_CPUS),
    }
)

LIMITS = Record(
    {
        "max_duration_s": Num(0, MAX_SECONDS),
        "max_flows": Int(1, MAX_FLOWS),
        "idle_timeout_s": Num(0, MAX_SECONDS),
        "max_session_s": Num(0, MAX_SECONDS),
    }
)

_READY_ENDPOINT = Record(
    {
        "pid": _PID,
        "placement": Record({"requested_cpu": Maybe(_CPU), "affinity": Seq(_CPU, 1, MAX_CPUS)}),
        "socket": Record(
            {
                "sndbuf_bytes": Int(0, 2**31 - 1),
                "rcvbuf_bytes": Int(0, 2**31 - 1),
                "congestion_control": Text(16),
                "nodelay": Int(0, 1),
            },
            optional=frozenset({"congestion_control", "nodelay"}),
        ),
    }
)

_STOPPED_ENDPOINT = Record(
    {
        "observed_cpus": Table(Int(0, 2**31 - 1), MAX_CPUS),
        "final_counters": Record(dict.fromkeys(SLOTS, _COUNT)),
    }
)

MESSAGES: dict[str, Record] = {
    "hello": Record({"client_nonce": Hex(NONCE_BYTES), "software": Text(64)}),
    "challenge": Record({"server_nonce": Hex(NONCE_BYTES), "mac": Hex(MAC_BYTES)}),
    "auth": Record({"mac": Hex(MAC_BYTES)}),
    "welcome": Record({"server": SERVER_FACTS, "limits": LIMITS}),
    "test": Record({"config": CONFIG}),
    "ready": Record({"ports": Seq(Int(1, 65535), 1, MAX_FLOWS), "data_token": Hex(DATA_TOKEN_BYTES)}),
    "start": Record({}),
    "started": Record({"endpoints": Seq(_READY_ENDPOINT, 1, MAX_FLOWS)}),
    "mark": Record({}),
    "marked": Record(
        {
            "t_s": _SECONDS,
            "cpu": Seq(Seq(_SECONDS, len(FIELDS), len(FIELDS)), 1, MAX_CPUS),
            "counters": Seq(Seq(_COUNT, len(SLOTS), len(SLOTS)), 1, MAX_FLOWS),
            "proc_cpu_s": Seq(_SECONDS, 1, MAX_FLOWS),
        }
    ),
    "stop": Record({}),
    "stopped": Record({"endpoints": Seq(_STOPPED_ENDPOINT, 1, MAX_FLOWS)}),
    "bye": Record({}),
    "error": Record({"code": Text(16, ERROR_CODES), "message": Text(512)}),
}


# ---- messages


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    # Two values for one key would let the validator and the reader see different messages.
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("duplicate key")
    return doc


def decode(body: bytes, accept: frozenset[str]) -> dict:
    """The message in a frame body, validated; ``accept``: the types this side may receive."""
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError covers bad JSON, NaN/Infinity, duplicate keys and over-long integers.
        raise ProtocolError("frame is not a UTF-8 JSON document") from None
    if not isinstance(doc, dict):
        raise ProtocolError("a message must be a JSON object")
    version = doc.get("v")
    if type(version) is not int:
        raise ProtocolError("message has no integer protocol version 'v'")
    if version != VERSION:
        raise VersionMismatch(version)
    kind = doc.get("type")
    if not isinstance(kind, str) or kind not in accept:
        raise ProtocolError(f"unexpected message type {_show(kind)}")
    MESSAGES[kind].check({k: v for k, v in doc.items() if k not in ("v", "type")}, kind)
    return doc


def encode(kind: str, limit: int = MAX_REPLY_FRAME, **fields: object) -> bytes:
    """One frame holding message ``kind``; checked against its spec like a received one."""
    MESSAGES[kind].check(fields, kind)
    body = json.dumps({"v": VERSION, "type": kind, **fields}, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > limit:
        raise ProtocolError(f"'{kind}' message of {len(body)} bytes exceeds the frame limit of {limit}")
    return len(body).to_bytes(_HEADER, "big") + body


def _recv_exact(sock: socket.socket, n: int, deadline: float, at_start: bool = False) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PeerTimeout()
        sock.settimeout(remaining)
        try:
            k = sock.recv_into(view[got:])
        except TimeoutError:
            raise PeerTimeout() from None
        except OSError as exc:
            raise PeerGone(exc.strerror or str(exc)) from None
        if k == 0:
            raise PeerGone("closed" if at_start and got == 0 else "closed in the middle of a frame")
        got += k
    return bytes(buf)


def receive(sock: socket.socket, deadline: float, accept: frozenset[str], limit: int = MAX_FRAME) -> dict:
    """The next message on ``sock``, complete before ``deadline`` (monotonic), at most ``limit`` bytes."""
    length = int.from_bytes(_recv_exact(sock, _HEADER, deadline, at_start=True), "big")
    if not 0 < length <= limit:
        raise ProtocolError(f"frame of {length} bytes is outside the limit of 1..{limit}")
    return decode(_recv_exact(sock, length, deadline), accept)


def send(sock: socket.socket, frame: bytes, deadline: float) -> None:
    """Send one frame, all of it before ``deadline`` (monotonic)."""
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        sock.sendall(frame)
    except TimeoutError:
        raise PeerTimeout() from None
    except OSError as exc:
        raise PeerGone(exc.strerror or str(exc)) from None


# ---- handshake


def client_mac(token: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    """The client's proof that it holds ``token``, bound to both nonces of this connection."""
    return hmac.new(token, f"vdevperf/{VERSION} client".encode() + server_nonce + client_nonce, hashlib.sha256).digest()


def server_mac(token: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """The server's proof that it holds ``token``: other label, nonces in the other order."""
    return hmac.new(token, f"vdevperf/{VERSION} server".encode() + client_nonce + server_nonce, hashlib.sha256).digest()


def proofs_match(received_hex: str, expected: bytes) -> bool:
    """Constant-time comparison of a received proof (validated hex) with the expected one."""
    return hmac.compare_digest(bytes.fromhex(received_hex), expected)


# ---- test configuration


def config_to_wire(cfg: TestConfig) -> dict:
    """The server's part of a TestConfig, as a ``test`` message carries it."""
    return {key: (str(cfg.test) if key == "test" else getattr(cfg, key)) for key in CONFIG.fields}


def config_from_wire(doc: dict) -> TestConfig:
    """A TestConfig from a validated ``test`` message; its own checks answered as 'bad-request'."""
    try:
        return TestConfig(**(doc | {"test": TestName(doc["test"])}))
    except ValueError as exc:
        raise ProtocolError(str(exc), code="bad-request") from None
