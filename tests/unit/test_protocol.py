"""The remote control protocol without a network: frames, message specs, proofs, tokens (no root needed)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from vdevperf.counters import SLOTS
from vdevperf.measure.cpu import FIELDS
from vdevperf.model import TestConfig, TestName
from vdevperf.remote import protocol
from vdevperf.remote.client import parse_address
from vdevperf.remote.protocol import (
    CLIENT_TYPES,
    SERVER_TYPES,
    PeerGone,
    PeerTimeout,
    ProtocolError,
    RemoteError,
    VersionMismatch,
)
from vdevperf.remote.token import read_token, token_bits

CONFIG = protocol.config_to_wire(TestConfig(test=TestName.UDP_RR, flows=2, server_cpu=1, server_rcvbuf=65536))
EXAMPLES = {
    "hello": {"client_nonce": "00" * 32, "software": "vdevperf client"},
    "challenge": {"server_nonce": "ff" * 32, "mac": "cd" * 32},
    "auth": {"mac": "ab" * 32},
    "welcome": {
        "server": {"software": "vdevperf 0.1.0", "hostname": "b", "kernel": "6.1", "cpu_model": None, "cpu_count": 2},
        "limits": {"max_duration_s": 60, "max_flows": 32, "idle_timeout_s": 60.0, "max_session_s": 600},
    },
    "test": {"config": CONFIG},
    "ready": {"ports": [40000, 40001], "data_token": "12" * 16},
    "start": {},
    "started": {
        "endpoints": [
            {
                "pid": 7,
                "placement": {"requested_cpu": None, "affinity": [0, 1]},
                "socket": {"sndbuf_bytes": 1, "rcvbuf_bytes": 2},
            }
        ]
    },
    "mark": {},
    "marked": {"t_s": 12.5, "cpu": [[1.0] * len(FIELDS)], "counters": [[0] * len(SLOTS)], "proc_cpu_s": [0.25]},
    "stop": {},
    "stopped": {"endpoints": [{"observed_cpus": {"0": 3}, "final_counters": dict.fromkeys(SLOTS, 5)}]},
    "bye": {},
    "error": {"code": "busy", "message": "busy: try again later"},
}


def body(message: dict) -> bytes:
    return json.dumps(message).encode()


def test_every_message_type_round_trips():
    assert set(EXAMPLES) == CLIENT_TYPES | SERVER_TYPES
    for kind, fields in EXAMPLES.items():
        frame = protocol.encode(kind, **fields)
        assert int.from_bytes(frame[:4], "big") == len(frame) - 4
        accept = CLIENT_TYPES if kind in CLIENT_TYPES else SERVER_TYPES
        assert protocol.decode(frame[4:], accept) == {"v": protocol.VERSION, "type": kind, **fields}


def _with(kind: str, **changes) -> bytes:
    return body({"v": protocol.VERSION, "type": kind, **EXAMPLES[kind], **changes})


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"\xff{}", "not a UTF-8 JSON document"),
        (b"{", "not a UTF-8 JSON document"),
        (b'{"v": 4, "type": "bye", "v": 4}', "not a UTF-8 JSON document"),  # duplicate key
        (b'{"v": 4, "type": "hello", "client_nonce": NaN}', "not a UTF-8 JSON document"),
        (b'{"v": ' + b"9" * 5000 + b"}", "not a UTF-8 JSON document"),  # integer too long
        (b"[" * 100_000 + b"]" * 100_000, "not a UTF-8 JSON document"),  # nesting too deep
        (b"[]", "must be a JSON object"),
        (b'{"type": "bye"}', "no integer protocol version"),
        (b'{"v": true, "type": "bye"}', "no integer protocol version"),
        (b'{"v": 4, "type": "challenge"}', "unexpected message type 'challenge'"),  # a server's message
        (b'{"v": 4, "type": ["bye"]}', "unexpected message type a JSON array"),
        (_with("bye", extra=1), "bye: unknown key 'extra'"),
        (body({"v": protocol.VERSION, "type": "hello", "software": "x"}), "hello: missing key 'client_nonce'"),
        (_with("hello", client_nonce="AB" * 32), "hello.client_nonce must be 32 bytes as lowercase hex"),
        (_with("hello", software="a\nb"), "hello.software must be printable text"),
        (_with("hello", software="\ud800"), "hello.software must be printable text"),
        (_with("test", config=CONFIG | {"flows": True}), "test.config.flows must be an integer in 1..64"),
        (_with("test", config=CONFIG | {"flows": 65}), "test.config.flows must be an integer in 1..64"),
        (_with("test", config=CONFIG | {"send_size": 2**40}), "test.config.send_size must be an integer"),
        (_with("test", config=CONFIG | {"duration_s": 1e999}), "not a UTF-8 JSON document"),
        (_with("test", config=CONFIG | {"duration_s": "10"}), "test.config.duration_s must be a number"),
        (_with("test", config=CONFIG | {"ip_version": 5}), "test.config.ip_version must be one of 4, 6"),
        (_with("test", config=CONFIG | {"test": "TCP_FOO"}), "test.config.test must be one of"),
        (_with("test", config={k: v for k, v in CONFIG.items() if k != "flows"}), "test.config: missing key 'flows'"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(raw, why):
    with pytest.raises(ProtocolError, match=None) as caught:
        protocol.decode(raw, CLIENT_TYPES)
    assert why in caught.value.why
    assert caught.value.code == "protocol"
    assert len(caught.value.why) < 200  # never echoes much of what the peer sent


def test_another_version_is_a_version_mismatch_whatever_else_the_message_holds():
    # 1 had the server prove itself last; 2 and 3 had fewer counter slots.
    assert protocol.VERSION == 4
    for other in (1, 3, 5):
        with pytest.raises(VersionMismatch) as caught:
            protocol.decode(body({"v": other, "type": "hello-v2", "whatever": [1, 2]}), CLIENT_TYPES)
        assert caught.value.theirs == other and caught.value.code == "version"


def test_outgoing_messages_are_checked_like_incoming_ones():
    with pytest.raises(ProtocolError, match="ports"):
        protocol.encode("ready", ports=[0], data_token="12" * 16)
    with pytest.raises(ProtocolError, match="exceeds the frame limit"):
        protocol.encode("error", limit=16, code="busy", message="busy")


def test_the_largest_machine_reading_fits_a_reply_frame():
    big = 10.0**11 + 0.25
    fields = {
        "t_s": big,
        "cpu": [[big] * len(FIELDS)] * protocol.MAX_CPUS,
        "counters": [[2**63 - 1] * len(SLOTS)] * protocol.MAX_FLOWS,
        "proc_cpu_s": [big] * protocol.MAX_FLOWS,
    }
    assert len(protocol.encode("marked", **fields)) <= protocol.MAX_REPLY_FRAME


def test_frames_are_bounded_before_their_body_is_read():
    a, b = socket.socketpair()
    with a, b:
        a.sendall((protocol.MAX_FRAME + 1).to_bytes(4, "big"))
        started = time.monotonic()
        with pytest.raises(ProtocolError, match="outside the limit of 1..65536"):
            protocol.receive(b, time.monotonic() + 5, CLIENT_TYPES)
        assert time.monotonic() - started < 1  # refused at once, no wait for 64 KiB that never come
        a.sendall((0).to_bytes(4, "big"))
        with pytest.raises(ProtocolError, match="outside the limit"):
            protocol.receive(b, time.monotonic() + 5, CLIENT_TYPES)


def test_silence_truncation_and_closing_are_told_apart():
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(PeerTimeout):
            protocol.receive(b, time.monotonic() + 0.05, CLIENT_TYPES)
        frame = protocol.encode("bye")
        a.sendall(frame[:-1])
        with pytest.raises(PeerTimeout):  # a frame must be whole by the deadline, not just begun
            protocol.receive(b, time.monotonic() + 0.05, CLIENT_TYPES)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(frame[:-1])
        a.close()
        with pytest.raises(PeerGone, match="middle of a frame"):
            protocol.receive(b, time.monotonic() + 1, CLIENT_TYPES)
    a, b = socket.socketpair()
    with a, b:
        a.close()
        with pytest.raises(PeerGone) as caught:
            protocol.receive(b, time.monotonic() + 1, CLIENT_TYPES)
        assert caught.value.why == "closed"


def test_proofs_bind_the_token_both_nonces_and_the_role():
    token, cn, sn = b"t" * 16, b"c" * 32, b"s" * 32
    proof = protocol.client_mac(token, sn, cn)
    assert protocol.proofs_match(proof.hex(), proof)
    others = [
        protocol.client_mac(b"u" * 16, sn, cn),
        protocol.client_mac(token, b"x" * 32, cn),
        protocol.client_mac(token, sn, b"x" * 32),
        protocol.server_mac(token, cn, sn),
        protocol.server_mac(token, sn, cn),
    ]
    assert all(not protocol.proofs_match(other.hex(), proof) for other in others)


def test_a_test_request_carries_the_servers_half_of_the_config():
    cfg = TestConfig(test=TestName.TCP_STREAM, duration_s=3, send_size=4096, client_cpu=1, server_cpu=0, flows=3)
    wire = protocol.config_to_wire(cfg)
    assert "client_cpu" not in wire and "interval_s" not in wire
    back = protocol.config_from_wire(wire)
    assert (back.test, back.duration_s, back.send_size, back.server_cpu, back.flows) == (cfg.test, 3, 4096, 0, 3)
    with pytest.raises(ProtocolError) as caught:
        protocol.config_from_wire(
            protocol.config_to_wire(TestConfig(test=TestName.UDP_STREAM, send_size=1472)) | {"send_size": 70000}
        )
    assert caught.value.code == "bad-request" and "65507" in caught.value.why


@pytest.mark.parametrize(
    "text, expected",
    [
        ("host", ("host", 12866)),
        ("198.18.0.2:5000", ("198.18.0.2", 5000)),
        ("[2001:2::2]:7", ("2001:2::2", 7)),
        ("[2001:2::2]", ("2001:2::2", 12866)),
        ("2001:2::2", ("2001:2::2", 12866)),
        ("h:0", None),
        ("h:x", None),
        ("[::1", None),
        (":5", None),
    ],
)
def test_remote_addresses(text, expected):
    if expected is None:
        with pytest.raises(ValueError):
            parse_address(text, 12866)
    else:
        assert parse_address(text, 12866) == expected


def _token_file(path, content: bytes, mode: int = 0o600):
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_token_files_must_be_private_regular_and_yours(tmp_path):
    path = _token_file(tmp_path / "token", b"0123456789abcdef0123456789abcdef\r\n")
    assert read_token(path) == b"0123456789abcdef0123456789abcdef"
    path.write_bytes(b"0123456789abcdef0123456789abcdef\n\n")
    assert read_token(path) == b"0123456789abcdef0123456789abcdef\n"  # only the one trailing newline goes
    path.chmod(0o640)
    with pytest.raises(RemoteError, match=r"accessible to group or others \(mode 0640\); run chmod 600"):
        read_token(path)
    path.chmod(0o600)
    with pytest.raises(RemoteError, match="cannot read it: No such file"):
        read_token(tmp_path / "missing")
    with pytest.raises(RemoteError, match="not a regular file"):
        tmp_path.chmod(0o700)
        read_token(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(RemoteError, match="is a symbolic link; name the file itself"):
        read_token(link)
    if os.geteuid() == 0:
        os.chown(path, 12345, -1)
        with pytest.raises(RemoteError, match=r"belongs to user 12345, not to this user \(0\) or root"):
            read_token(path)


def test_a_fifo_or_a_device_is_refused_at_once_not_read():
    # A FIFO with no writer would block an ordinary open for ever: this one must fail at once.
    fifo = Path(tempfile.mkdtemp()) / "fifo"
    os.mkfifo(fifo, 0o600)
    started = time.monotonic()
    try:
        with pytest.raises(RemoteError, match="not a regular file"):
            read_token(fifo)
        with pytest.raises(RemoteError, match="not a regular file"):
            read_token(Path("/dev/zero"))  # endless bytes
    finally:
        fifo.unlink()
        fifo.parent.rmdir()
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "token, bits",
    [
        (b"0123456789abcdef" * 2, 128),  # openssl rand -hex 16
        (b"0123456789ABCDEF" * 2, 128),
        (b"0123456789abcdef" * 2 + b"0", 132),
        (b"0123456789abcde", 60),  # 15 hex digits
        (b"Kx3+9/ab" * 3, 144),  # base64's alphabet: 6 bits a character
        (b"correct horse battery", 126),  # 21 printable characters: not enough
        (bytes(range(16)), 128),  # 16 random bytes: 8 bits each
        (b"", 0),
    ],
)
def test_a_token_counts_the_bits_its_alphabet_can_carry(token, bits):
    assert token_bits(token) == bits


def test_tokens_under_128_bits_are_refused_with_a_way_to_make_one(tmp_path):
    path = _token_file(tmp_path / "token", b"0123456789abcdef" * 2 + b"\n")
    assert read_token(path)
    for weak in (b"0123456789abcdef0123456789abcde\n", b"short\n", b"a 21-character phrase\n", b"\n"):
        path.write_bytes(weak)
        with pytest.raises(
            RemoteError,
            match=r"use at least 128: 32 hex digits, 22 other printable characters "
            r"or 16 random bytes \(e.g. umask 077; openssl rand -hex 32",
        ):
            read_token(path)
    path.write_bytes(b"x" * 5000)
    with pytest.raises(RemoteError, match="more than 4096 bytes"):
        read_token(path)
