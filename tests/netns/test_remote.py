"""Remote endpoints for real: a vdevperf server in one namespace as the remote host, clients in another,
across a veth; figures, refusals, limits, a client that vanishes, a fuzzed control protocol, and attacks:
a lockout by idle connections, guessing, an impostor server, descriptors endpoints must not hold."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vdevperf import bench
from vdevperf.model import TestConfig, TestName
from vdevperf.remote import admission, protocol
from vdevperf.remote.client import RemoteTarget
from vdevperf.results import ResultFile, load
from vdevperf.topology import netns
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "vdevperf" / "schema" / "result.schema.json").read_text())
SERVER_IP = "198.18.0.2"
TOKEN = b"remote-test-token-0123456789abcdef"
SHORT = {"duration_s": 0.6, "warmup_s": 0.2, "interval_s": 0.3}
REMOTE_FIGURES = {
    "remote_cpu_util_pct",
    "remote_softirq_pct",
    "remote_service_demand_us_per_kb",
    "remote_service_demand_us_per_tr",
}
FUZZ_MESSAGES = 10_000


@pytest.fixture(scope="module")
def veth():
    with build(load_topology("veth")) as topo:
        yield topo


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_bytes(TOKEN + b"\n")
    path.chmod(0o600)
    return path


class ServerProcess:
    """``python -m vdevperf server`` in the server namespace; stopped by its PID."""

    def __init__(self, topo, token_file: Path, log: Path, *flags: str) -> None:
        self.log_path = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vdevperf", "server", "--port", "0", "--token-file", str(token_file), *flags],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=out,
                preexec_fn=lambda: netns.move_to(topo.server.netns_path),
            )
        deadline = time.monotonic() + 15
        while "listening on" not in self.log():
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, "the server did not start listening"
            time.sleep(0.05)
        self.port = int(self.log().split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        self.process = psutil.Process(self.proc.pid)

    def log(self) -> str:
        return self.log_path.read_text()

    def endpoints(self) -> list[psutil.Process]:
        alive = []
        for child in self.process.children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
            except psutil.NoSuchProcess:
                pass  # it ended and was reaped between the listing and the look
        return alive

    def wait_for(self, condition, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not reached in time"
            time.sleep(0.05)

    def stop(self) -> None:
        children = self.process.children(recursive=True)
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == -signal.SIGTERM
        gone, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"endpoints outlived the server: {alive}"
        log = self.log()
        assert "Traceback" not in log and "internal error" not in log, log[-2000:]


@pytest.fixture(scope="module")
def server(veth, token_file, tmp_path_factory):
    # No back-off: the fuzz test fails thousands of handshakes from one address on purpose.
    srv = ServerProcess(
        veth,
        token_file,
        tmp_path_factory.mktemp("server") / "server.log",
        "--max-clients",
        "2",
        "--max-duration",
        "30",
        "--idle-timeout",
        "3",
        "--auth-backoff",
        "0",
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sources(veth):
    """More addresses of the client's host, for strangers: 198.18.0.3 to .9."""
    ipr = veth.ipr("cli")
    index = ipr.link_lookup(ifname=veth.ifname("c0"))[0]
    added = [f"198.18.0.{i}" for i in range(3, 10)]
    for address in added:
        ipr.addr("add", index=index, address=address, prefixlen=24)
    yield added
    for address in added:
        ipr.addr("del", index=index, address=address, prefixlen=24)


def target(topo, srv: ServerProcess, token: bytes = TOKEN) -> RemoteTarget:
    return RemoteTarget(SERVER_IP, srv.port, token, netns_path=topo.client.netns_path)


def vdevperf_client(topo, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdevperf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: netns.move_to(topo.client.netns_path),
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ---- a raw protocol client, to say what a well-behaved client never would


def connect(topo, srv: ServerProcess, source: str | None = None) -> socket.socket:
    with netns.entered_path(topo.client.netns_path):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    if source is not None:
        sock.bind((source, 0))
    sock.connect((SERVER_IP, srv.port))
    return sock


def send(sock: socket.socket, kind: str, **fields) -> bytes:
    frame = protocol.encode(kind, **fields)
    sock.sendall(frame)
    return frame


def reply(sock: socket.socket) -> dict:
    return protocol.receive(sock, time.monotonic() + 10, protocol.SERVER_TYPES, protocol.MAX_REPLY_FRAME)


def handshake(sock: socket.socket, token: bytes = TOKEN) -> list[bytes]:
    """A full client handshake (the server proves itself first); returns the frames the client sent."""
    nonce = os.urandom(protocol.NONCE_BYTES)
    frames = [send(sock, "hello", client_nonce=nonce.hex(), software="raw test client")]
    challenge = reply(sock)
    assert challenge["type"] == "challenge"
    server_nonce = bytes.fromhex(challenge["server_nonce"])
    assert protocol.proofs_match(challenge["mac"], protocol.server_mac(TOKEN, nonce, server_nonce))
    mac = protocol.client_mac(token, server_nonce, nonce)
    frames.append(send(sock, "auth", mac=mac.hex()))
    return frames


def refusal(sock: socket.socket) -> dict:
    """The error the server answers with, after which it closes the connection."""
    message = reply(sock)
    assert message["type"] == "error", message
    assert sock.recv(1) == b""
    return message


def raw_test(topo, srv: ServerProcess, source: str | None = None, **overrides) -> tuple[socket.socket, dict]:
    """An authenticated raw session with a TCP_RR test opened; returns it and the 'ready' reply."""
    sock = connect(topo, srv, source)
    handshake(sock)
    assert reply(sock)["type"] == "welcome"
    cfg = TestConfig(test=TestName.TCP_RR, **(SHORT | overrides))
    send(sock, "test", config=protocol.config_to_wire(cfg))
    ready = reply(sock)
    assert ready["type"] == "ready", ready
    return sock, ready


# ---- figures


def test_remote_runs_give_the_figures_of_local_runs_plus_the_servers_cpu(veth, server, tmp_path):
    results = ResultFile(path=tmp_path / "r.json", command=["test"])
    for test in TestName:
        cfg = TestConfig(test=test, send_size=1472 if test.is_udp else 128 * 1024, **SHORT)
        remote = bench.measure_remote(target(veth, server), cfg)
        local = bench.measure(veth, cfg)
        results.add(remote)
        have = {k for k, v in vars(remote.metrics).items() if v is not None}
        local_have = {k for k, v in vars(local.metrics).items() if v is not None}
        per_unit = "remote_service_demand_us_per_kb" if test.is_stream else "remote_service_demand_us_per_tr"
        assert have - local_have == REMOTE_FIGURES - {
            "remote_service_demand_us_per_kb",
            "remote_service_demand_us_per_tr",
        } | {per_unit}, test
        # Retransmits come from TCP_INFO, read at this host's ends only: a remote run has them when the client
        # is the only sender.
        assert ("retransmits" in have) == (test.traits.tcp_info and test.traits.senders == ("client",)), test
        assert local_have - {"retransmits"} <= have, test
        m = remote.metrics
        assert (m.throughput_mbps or m.transactions_per_s) > 0 and getattr(m, per_unit) > 0
        # The "remote" host is this machine: its figures, read over the control connection, match the
        # ones read here over the same window (give or take /proc/stat's 10 ms ticks).
        assert m.remote_cpu_util_pct == pytest.approx(m.cpu_util_pct, abs=10), test
        assert remote.remote["server"]["cpu_count"] == os.cpu_count()
        servers = [e for e in remote.iterations[0].endpoints if e["role"] == "server"]
        counters = servers[0]["final_counters"]
        assert counters["bytes_received"] + counters["bytes_sent"] > 0 and servers[0]["placement"]["observed_cpus"]
    # The server listens on every address of its namespace (the default, ::): IPv6 works as IPv4 does.
    cfg = TestConfig(test=TestName.TCP_RR, ip_version=6, **SHORT)
    results.add(bench.measure_remote(RemoteTarget("2001:2::2", server.port, TOKEN, veth.client.netns_path), cfg))
    assert results.runs[-1].remote["address"] == f"[2001:2::2]:{server.port}"
    document = load(tmp_path / "r.json")
    jsonschema.validate(document, SCHEMA)
    assert all(s["remote_cpu"] is not None for r in document["runs"] for s in r["iterations"][0]["raw"]["samples"])
    assert "[2001:2::1]:" in server.log()


def test_the_command_line_client_shows_remote_cpu_columns(veth, server, token_file, tmp_path):
    proc = vdevperf_client(
        veth,
        "run",
        "--remote",
        f"{SERVER_IP}:{server.port}",
        "--token-file",
        str(token_file),
        "-t",
        "TCP_STREAM,TCP_RR",
        "-P",
        "2",
        "-l",
        "0.6",
        "--warmup",
        "0.2",
        "--interval",
        "0.3",
        "-o",
        str(tmp_path / "r.json"),
    )
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert "remote CPU %" in header and "remote svc demand" in header
    rows = [line.split() for line in proc.stdout.splitlines()[2:4]]
    assert [r[:2] for r in rows] == [["remote", "TCP_STREAM"], ["remote", "TCP_RR"]]
    document = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(document, SCHEMA)
    assert all(r["remote"]["address"] == f"{SERVER_IP}:{server.port}" for r in document["runs"])
    assert all(len(r["metrics"]["flows"]) == 2 for r in document["runs"])


# ---- refusals


def test_wrong_missing_or_replayed_tokens_and_other_versions_are_refused_clearly(veth, server, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"not-the-token-of-this-server")
    wrong.chmod(0o600)
    # The server proves itself first: a client with another token stops there, its proof unsaid.
    line = one_line_error(
        vdevperf_client(veth, "run", "--remote", f"{SERVER_IP}:{server.port}", "--token-file", str(wrong), "-l", "1")
    )
    assert line == (
        f"vdevperf: server {SERVER_IP}:{server.port}: authentication failed: it did not prove it "
        "holds this client's token (the tokens differ, or it is not the vdevperf server expected)"
    )
    line = one_line_error(vdevperf_client(veth, "run", "--remote", f"{SERVER_IP}:{server.port}", "-l", "1"))
    assert line.startswith("vdevperf: --token-file: is required with --remote")

    # No token at all: straight from the challenge to a test request.
    sock = connect(veth, server)
    send(sock, "hello", client_nonce=os.urandom(32).hex(), software="raw")
    assert reply(sock)["type"] == "challenge"
    send(sock, "test", config=protocol.config_to_wire(TestConfig(test=TestName.TCP_RR)))
    assert refusal(sock) == {
        "v": protocol.VERSION,
        "type": "error",
        "code": "auth",
        "message": "expected 'auth', got 'test'",
    }

    # A recorded handshake, replayed on a new connection: the server's nonce is new, the proof is not.
    sock = connect(veth, server)
    recorded = handshake(sock)
    assert reply(sock)["type"] == "welcome"
    sock.close()
    sock = connect(veth, server)
    sock.sendall(recorded[0])
    assert reply(sock)["type"] == "challenge"
    sock.sendall(recorded[1])
    assert refusal(sock) == {
        "v": protocol.VERSION,
        "type": "error",
        "code": "auth",
        "message": "authentication failed: the client's token is not this server's",
    }

    # A client of the version before: it hears which versions met.
    sock = connect(veth, server)
    body = json.dumps({"v": 1, "type": "hello", "client_nonce": "00" * 32, "software": "vdevperf 0.1"}).encode()
    sock.sendall(len(body).to_bytes(4, "big") + body)
    assert refusal(sock)["message"] == "protocol version mismatch: server speaks protocol 4, client sent 1"

    log = server.log()
    assert "refused: version: protocol version mismatch: server speaks protocol 4, client sent 1" in log
    assert ": authentication failed: no proof (closed)" in log  # the client with the wrong token
    assert ": authentication failed: no proof (expected 'auth', got 'test')" in log
    assert ": authentication failed: wrong proof" in log and "backs off" not in log  # --auth-backoff 0
    # The server kept serving throughout.
    assert bench.measure_remote(target(veth, server), TestConfig(test=TestName.TCP_RR, **SHORT)).metrics


def test_data_connections_need_the_sessions_address_and_token(veth, server, sources):
    sock, ready = raw_test(veth, server)
    port = ready["ports"][0]
    with netns.entered_path(veth.client.netns_path):
        stranger, impostor, client = (socket.socket() for _ in range(3))
    try:
        # Another address of the client's host, even with the right token: the kernel drops its SYN.
        stranger.bind((sources[0], 0))
        stranger.settimeout(0.5)
        with pytest.raises(TimeoutError):
            stranger.connect((SERVER_IP, port))
        # The session's address with a wrong token: accepted, then closed.
        impostor.settimeout(5)
        impostor.connect((SERVER_IP, port))
        impostor.sendall(b"x" * protocol.DATA_TOKEN_BYTES)
        assert impostor.recv(1) == b""
        client.settimeout(5)
        client.connect((SERVER_IP, port))
        client.sendall(bytes.fromhex(ready["data_token"]))
        send(sock, "start")
        assert reply(sock)["type"] == "started"
        client.close()  # a TCP_RR server endpoint ends at its client's EOF
        send(sock, "stop")
        stopped = reply(sock)
        assert stopped["type"] == "stopped" and stopped["endpoints"][0]["final_counters"]["transactions"] == 0
        send(sock, "bye")
        assert sock.recv(1) == b""
    finally:
        for s in (stranger, impostor, client, sock):
            s.close()


# ---- limits


def test_max_clients_are_bounded(veth, server):
    held = [connect(veth, server) for _ in range(2)]
    for sock in held:
        handshake(sock)
        assert reply(sock)["type"] == "welcome"
    line = one_line_error(
        vdevperf_client(
            veth, "run", "--remote", f"{SERVER_IP}:{server.port}", "--token-file", str(server_token(server)), "-l", "1"
        )
    )
    assert (
        line == f"vdevperf: server {SERVER_IP}:{server.port}: busy: serving its maximum of 2 client(s); try again later"
    )
    held.pop().close()
    assert bench.measure_remote(target(veth, server), TestConfig(test=TestName.TCP_RR, **SHORT)).metrics
    held.pop().close()
    server.wait_for(lambda: server.process.num_threads() <= 2)


def server_token(srv: ServerProcess) -> Path:
    return Path(srv.proc.args[srv.proc.args.index("--token-file") + 1])


def test_max_duration_refuses_long_tests_and_stops_overrunning_ones(veth, server):
    line = one_line_error(
        vdevperf_client(
            veth,
            "run",
            "--remote",
            f"{SERVER_IP}:{server.port}",
            "--token-file",
            str(server_token(server)),
            "-l",
            "29.5",
        )
    )
    assert line == (
        f"vdevperf: server {SERVER_IP}:{server.port}: test of 30.5 s (29.5 s + 1 s warm-up) "
        "exceeds this server's --max-duration of 30 s"
    )
    # A client that starts a 0.3 s test and never stops it: killed after the test's length and the grace.
    sock, ready = raw_test(veth, server, duration_s=0.3, warmup_s=0.0)
    with netns.entered_path(veth.client.netns_path):
        data = socket.create_connection((SERVER_IP, ready["ports"][0]), timeout=5)
    data.sendall(bytes.fromhex(ready["data_token"]))
    send(sock, "start")
    assert reply(sock)["type"] == "started"
    assert len(server.endpoints()) == 1
    started = time.monotonic()
    message = refusal(sock)
    assert message["code"] == "duration" and "without a stop" in message["message"]
    assert 3.0 <= time.monotonic() - started < 6.0
    assert server.endpoints() == []
    data.close()


def test_idle_sessions_end(veth, server):
    sock = connect(veth, server)
    handshake(sock)
    assert reply(sock)["type"] == "welcome"
    assert refusal(sock) == {
        "v": protocol.VERSION,
        "type": "error",
        "code": "idle",
        "message": "idle for 3 s: session closed",
    }


def test_a_client_that_vanishes_mid_test_does_not_leave_the_server_stuck(veth, server, token_file, tmp_path):
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vdevperf",
            "run",
            "--remote",
            f"{SERVER_IP}:{server.port}",
            "--token-file",
            str(token_file),
            "-t",
            "TCP_STREAM",
            "-P",
            "2",
            "-l",
            "20",
            "-o",
            str(tmp_path / "r.json"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: netns.move_to(veth.client.netns_path),
    )
    try:
        server.wait_for(lambda: len(server.endpoints()) == 2)
        time.sleep(0.5)
    finally:
        client.kill()
        client.wait()
    server.wait_for(lambda: server.endpoints() == [], timeout=5)
    # The session logs the reason as it ends, which may be a moment after its endpoints are gone.
    server.wait_for(lambda: "client went away" in server.log(), timeout=5)
    assert (
        "client went away (closed in the middle of a frame during TCP_STREAM)" in server.log()
        or "client went away (closed during TCP_STREAM)" in server.log()
    )
    assert bench.measure_remote(target(veth, server), TestConfig(test=TestName.TCP_STREAM, **SHORT)).metrics


# ---- attacks and hardening


@pytest.fixture(scope="module")
def guarded(veth, token_file, tmp_path_factory):
    """A server with small limits, to reach each of them quickly."""
    srv = ServerProcess(
        veth,
        token_file,
        tmp_path_factory.mktemp("guarded") / "server.log",
        "--max-clients",
        "2",
        "--max-duration",
        "2",
        "--max-session-time",
        "2.5",
        "--idle-timeout",
        "2",
        "--max-endpoints",
        "3",
        "--max-pending",
        "8",
        "--max-pending-per-address",
        "4",
        "--auth-backoff",
        "0.5",
    )
    yield srv
    srv.stop()


# Keeps N idle connections from one address open to a server, opening a new one for each the server
# closes (in rounds 50 ms apart: the point is the slots, not a flood of the 2-CPU test machine), until
# its stdin closes; then prints what it saw. A separate process: it competes for CPU as a real attacker
# would, not for this interpreter's lock.
LOCKOUT = r"""
import json, select, socket, sys, time
server, port, source, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
conns, opened, dropped, busy = set(), 0, 0, 0
while True:
    while len(conns) < n:
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        s.connect((server, port))
        conns.add(s)
        opened += 1
        if opened == n:
            print("ready", flush=True)
    time.sleep(0.05)
    readable = select.select([sys.stdin, *conns], [], [], 0)[0]
    if sys.stdin in readable:
        break
    for s in readable:
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        busy += b'"code":"busy"' in data
        dropped += 1
        conns.discard(s)
        s.close()
print(json.dumps({"opened": opened, "dropped": dropped, "busy": busy, "open": len(conns)}), flush=True)
"""


def test_64_idle_connections_from_one_address_do_not_lock_a_client_out(veth, server, sources):
    server.wait_for(lambda: server.process.num_threads() <= 2)
    fds = server.process.num_fds()
    attacker = subprocess.Popen(
        [sys.executable, "-c", LOCKOUT, SERVER_IP, str(server.port), sources[1], "64"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: netns.move_to(veth.client.netns_path),
    )
    threads = []
    try:
        assert attacker.stdout.readline() == "ready\n"
        started = time.monotonic()
        cfg = TestConfig(test=TestName.TCP_RR, duration_s=0.3, warmup_s=0.1, interval_s=0.3)
        for _ in range(10):
            assert bench.measure_remote(target(veth, server), cfg).metrics.transactions_per_s > 0
            threads.append(server.process.num_threads())
        elapsed = time.monotonic() - started
    finally:
        attacker.stdin.close()
        report = attacker.stdout.read()
        attacker.wait(10)
    seen = json.loads(report)
    print(f"lockout: 10 runs in {elapsed:.1f} s against {seen}; server threads {threads}")
    # The attacker kept its 64 open all along: the server dropped the oldest of its handshakes (8 per
    # address) for each new one, told each 'busy', and never ran out of room for the client.
    assert seen["open"] == 64 and seen["opened"] >= 64 + 56 and seen["busy"] >= 56
    assert elapsed < 30
    assert "dropped: its handshake slot went to a newer connection" in server.log()
    # Threads: the accept loop, at most 8 of the attacker's handshakes, the client's session, and
    # dropped handshakes on their way out.
    assert max(threads) <= 2 + 8 + 1 + 8, threads
    server.wait_for(lambda: server.process.num_threads() <= 2 and server.process.num_fds() <= fds)


def test_handshake_slots_are_capped_per_address_and_in_total_oldest_first(veth, guarded, sources):
    a, b, c = sources[4], sources[5], sources[6]
    busy = {
        "v": protocol.VERSION,
        "type": "error",
        "code": "busy",
        "message": "busy: too many connections are authenticating; try again later",
    }
    opened = from_a = [connect(veth, guarded, a) for _ in range(6)]
    try:
        # A's cap is 4: its two oldest made room for its two newest.
        assert [refusal(sock) for sock in from_a[:2]] == [busy, busy]
        from_b = [connect(veth, guarded, b) for _ in range(4)]
        from_c = connect(veth, guarded, c)
        opened = from_a + from_b + [from_c]
        # The server's cap is 8 (A's 4 and B's 4): C's first takes the oldest slot of all, A's third.
        assert refusal(from_a[2]) == busy
        # A real client from yet another address finds the server full too, and gets in.
        client = connect(veth, guarded)
        opened.append(client)
        handshake(client)
        assert reply(client)["type"] == "welcome"
        assert refusal(from_a[3]) == busy
        still = from_a[4:] + from_b + [from_c]
        assert select.select(still, [], [], 0.3)[0] == []  # the others wait on, untouched
    finally:
        for sock in opened:
            sock.close()
    assert "dropped: its handshake slot went to a newer connection" in guarded.log()
    guarded.wait_for(lambda: guarded.process.num_threads() <= 2)


def test_a_failed_authentication_backs_its_address_off(veth, guarded, sources):
    source = sources[2]
    nonces = {}

    def up_to_challenge(source: str) -> socket.socket:
        sock = connect(veth, guarded, source)
        nonce = os.urandom(32)
        send(sock, "hello", client_nonce=nonce.hex(), software="guesser")
        challenge = reply(sock)
        nonces[sock] = (nonce, bytes.fromhex(challenge["server_nonce"]))
        return sock

    def prove(sock: socket.socket, token: bytes) -> None:
        nonce, server_nonce = nonces[sock]
        send(sock, "auth", mac=protocol.client_mac(token, server_nonce, nonce).hex())

    wrong = b"a guess at the token, 128 bits or more"
    guesses = [up_to_challenge(source) for _ in range(2)]
    prove(guesses[0], wrong)
    proved = time.monotonic()
    guarded.wait_for(lambda: f"authentication failed: wrong proof; {source} backs off for 0.5 s" in guarded.log())
    # Meanwhile: a new connection of that address is turned away at once; its other guess, even a right
    # one, is not checked; another address is served.
    late = connect(veth, guarded, source)
    assert refusal(late) == {
        "v": protocol.VERSION,
        "type": "error",
        "code": "busy",
        "message": "busy: an authentication from this address failed; it may try again in 1 s",
    }
    prove(guesses[1], TOKEN)
    assert refusal(guesses[1])["message"].startswith("busy: an authentication from this address failed")
    other = connect(veth, guarded)
    handshake(other)
    assert reply(other)["type"] == "welcome"
    other.close()
    # The wrong proof is answered once the back-off has passed.
    assert refusal(guesses[0]) == {
        "v": protocol.VERSION,
        "type": "error",
        "code": "auth",
        "message": "authentication failed: the client's token is not this server's",
    }
    assert time.monotonic() - proved >= 0.5
    # The next failure doubles it.
    guess = up_to_challenge(source)
    prove(guess, wrong)
    started = time.monotonic()
    assert refusal(guess)["code"] == "auth"
    assert 0.9 <= time.monotonic() - started < 2.5
    # Taking the challenge and leaving without a proof is a failure too (the server's proof is not
    # free): 2 s now. Then the address waits it out, and holds the token.
    up_to_challenge(source).close()
    guarded.wait_for(lambda: f"authentication failed: no proof (closed); {source} backs off for 2 s" in guarded.log())
    assert refusal(connect(veth, guarded, source))["message"].endswith("try again in 2 s")
    time.sleep(2.0)
    sock = connect(veth, guarded, source)
    handshake(sock)
    assert reply(sock)["type"] == "welcome"
    sock.close()
    assert f"turned away: {source} backs off after a failed authentication" in guarded.log()


def test_the_server_proves_itself_first_and_an_impostor_hears_no_proof(veth, token_file):
    with netns.entered_path(veth.server.netns_path):
        impostor = socket.create_server((SERVER_IP, 0))
    impostor.settimeout(20)
    port = impostor.getsockname()[1]
    heard: list[bytes] = []

    def serve(answer) -> None:
        conn, _ = impostor.accept()
        with conn:
            hello = protocol.receive(conn, time.monotonic() + 10, protocol.CLIENT_TYPES)
            conn.sendall(answer(bytes.fromhex(hello["client_nonce"])))
            conn.settimeout(10)
            rest = b""
            while chunk := conn.recv(65536):
                rest += chunk
            heard.append(rest)

    def guessed_challenge(client_nonce: bytes) -> bytes:
        server_nonce = os.urandom(32)
        mac = protocol.server_mac(b"what the impostor thinks the token is", client_nonce, server_nonce)
        return protocol.encode("challenge", server_nonce=server_nonce.hex(), mac=mac.hex())

    def old_server(client_nonce: bytes) -> bytes:
        body = json.dumps(
            {
                "v": 1,
                "type": "error",
                "code": "version",
                "message": "protocol version mismatch: server speaks protocol 1, client sent 4",
            }
        )
        return len(body).to_bytes(4, "big") + body.encode()

    try:
        for answer in (guessed_challenge, old_server):
            thread = threading.Thread(target=serve, args=(answer,))
            thread.start()
            line = one_line_error(
                vdevperf_client(
                    veth,
                    "run",
                    "--remote",
                    f"{SERVER_IP}:{port}",
                    "--token-file",
                    str(token_file),
                    "-t",
                    "TCP_RR",
                    "-l",
                    "0.3",
                )
            )
            thread.join(10)
            if answer is guessed_challenge:
                assert line == (
                    f"vdevperf: server {SERVER_IP}:{port}: authentication failed: it did not prove "
                    "it holds this client's token (the tokens differ, or it is not the vdevperf server "
                    "expected)"
                )
            else:
                assert line == (
                    f"vdevperf: server {SERVER_IP}:{port}: protocol version mismatch: this client "
                    "speaks protocol 4, the server sent 1"
                )
    finally:
        impostor.close()
    assert heard == [b"", b""]  # after its hello, the client said nothing more: no proof to take away


def test_a_fifo_token_file_is_refused_at_once(veth, tmp_path):
    fifo = tmp_path / "token"
    os.mkfifo(fifo, 0o600)
    for args in (["server", "--port", "0"], ["run", "--remote", f"{SERVER_IP}:1", "-l", "1"]):
        started = time.monotonic()
        line = one_line_error(vdevperf_client(veth, *args, "--token-file", str(fifo), timeout=20))
        assert line == f"vdevperf: --token-file {fifo}: is not a regular file"
        assert time.monotonic() - started < 10


def _fds(pid: int) -> dict[int, str]:
    return {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


def _listening_ports(pid: int) -> dict[int, int]:
    """Inode to port of the IPv4 TCP sockets listening in ``pid``'s namespace."""
    lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    return {int(f[9]): int(f[1].split(":")[1], 16) for f in map(str.split, lines) if f[3] == "0A"}


def test_endpoints_hold_no_descriptor_but_their_own(veth, server):
    first, ready = raw_test(veth, server, flows=2)
    second, more = raw_test(veth, server, flows=1)  # forked while the first session's endpoints run
    try:
        endpoints = server.endpoints()
        assert len(endpoints) == 3
        for ep in endpoints:
            fds = _fds(ep.pid)
            own = {fd: what for fd, what in fds.items() if fd > 2}
            # Two pipes to the server and one socket: not the listener, no control connection, nothing of
            # the other session or of the other flows.
            assert sorted(what.split(":")[0] for what in own.values()) == ["pipe", "pipe", "socket"], fds
            (sock,) = [what for what in own.values() if what.startswith("socket:")]
            assert _listening_ports(ep.pid).get(int(sock[len("socket:[") : -1])) in ready["ports"] + more["ports"]
    finally:
        for sock in (first, second):
            send(sock, "bye")
            sock.close()
    server.wait_for(lambda: server.endpoints() == [])


PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


@contextlib.contextmanager
def pids_cgroup(pid: int):
    """``pid`` (all its threads) in a cgroup of its own, whose pids.max the caller sets."""
    group = PIDS_CGROUP / f"vdevperf-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cgroup.procs").write_text(str(pid))
        yield group
    finally:
        (PIDS_CGROUP / "cgroup.procs").write_text(str(pid))
        group.rmdir()


@pytest.mark.skipif(not (PIDS_CGROUP / "cgroup.procs").exists(), reason="no cgroup v1 pids controller")
def test_a_failed_fork_leaks_nothing_and_the_server_goes_on(veth, server):
    server.wait_for(lambda: server.process.num_threads() <= 2 and server.endpoints() == [])
    fds = _fds(server.proc.pid)
    sock = connect(veth, server)
    handshake(sock)
    assert reply(sock)["type"] == "welcome"
    with pids_cgroup(server.proc.pid) as group:
        # Room for one more task: the first endpoint forks, the second cannot.
        (group / "pids.max").write_text(str(int((group / "pids.current").read_text()) + 1))
        send(sock, "test", config=protocol.config_to_wire(TestConfig(test=TestName.TCP_RR, flows=3, **SHORT)))
        assert refusal(sock) == {
            "v": protocol.VERSION,
            "type": "error",
            "code": "load",
            "message": "server endpoint: cannot start it: Resource temporarily unavailable",
        }
        sock.close()
        server.wait_for(lambda: server.process.num_threads() <= 2)
        assert server.endpoints() == []  # the one that had started was killed and reaped
        assert (group / "pids.events").read_text().split() != ["max", "0"]
    # No pipe or socket of either fork left open (the session's own socket closes as its thread ends).
    server.wait_for(lambda: _fds(server.proc.pid).keys() == fds.keys(), timeout=5.0)
    assert bench.measure_remote(target(veth, server), TestConfig(test=TestName.TCP_RR, **SHORT)).metrics


def test_endpoint_processes_are_capped_server_wide(veth, guarded):
    first, _ = raw_test(veth, guarded, flows=2)  # 2 of the server's 3
    try:
        sock = connect(veth, guarded)
        handshake(sock)
        assert reply(sock)["limits"]["max_flows"] == 3
        send(sock, "test", config=protocol.config_to_wire(TestConfig(test=TestName.TCP_RR, flows=2, **SHORT)))
        assert refusal(sock) == {
            "v": protocol.VERSION,
            "type": "error",
            "code": "busy",
            "message": "busy: running its maximum of 3 endpoint processes; try again later",
        }
        second, _ = raw_test(veth, guarded, flows=1)  # 3 of 3
        assert len(guarded.endpoints()) == 3
        send(second, "bye")
        second.close()
    finally:
        send(first, "bye")
        first.close()
    guarded.wait_for(lambda: guarded.endpoints() == [])
    sock = connect(veth, guarded)
    handshake(sock)
    assert reply(sock)["type"] == "welcome"
    send(sock, "test", config=protocol.config_to_wire(TestConfig(test=TestName.TCP_RR, flows=4, **SHORT)))
    assert refusal(sock) == {
        "v": protocol.VERSION,
        "type": "error",
        "code": "limit",
        "message": "4 flows exceed this server's limit of 3",
    }


def run_raw_test(topo, sock: socket.socket) -> None:
    """One short TCP_RR test on an authenticated raw session, its data connection made by hand."""
    cfg = TestConfig(test=TestName.TCP_RR, duration_s=0.3, warmup_s=0.0, interval_s=0.3)
    send(sock, "test", config=protocol.config_to_wire(cfg))
    ready = reply(sock)
    with netns.entered_path(topo.client.netns_path):
        data = socket.create_connection((SERVER_IP, ready["ports"][0]), timeout=5)
    with data:
        data.sendall(bytes.fromhex(ready["data_token"]))
        send(sock, "start")
        assert reply(sock)["type"] == "started"
    send(sock, "stop")
    assert reply(sock)["type"] == "stopped"


def test_a_session_lasts_at_most_max_session_time(veth, guarded):
    sock = connect(veth, guarded)
    handshake(sock)
    assert reply(sock)["limits"]["max_session_s"] == 2.5
    time.sleep(1.0)
    send(sock, "test", config=protocol.config_to_wire(TestConfig(test=TestName.TCP_RR, duration_s=2, warmup_s=0)))
    message = refusal(sock)
    assert message["code"] == "limit"
    assert re.fullmatch(
        r"test of 2 s would end past this session's --max-session-time of 2\.5 s \(1\.[0-5] s "
        r"left\); connect again for a new session",
        message["message"],
    ), message
    # A busy session is ended at its time too, between tests, though never idle for --idle-timeout (2 s).
    sock = connect(veth, guarded)
    handshake(sock)
    assert reply(sock)["type"] == "welcome"
    welcome = time.monotonic()
    time.sleep(0.6)
    run_raw_test(veth, sock)
    assert refusal(sock) == {
        "v": protocol.VERSION,
        "type": "error",
        "code": "limit",
        "message": "session reached this server's --max-session-time of 2.5 s; connect again to go on",
    }
    assert 2.3 <= time.monotonic() - welcome < 3.5


def test_silent_data_connections_stall_no_admission(veth, server):
    # The filter lets in any connection from the client's address (another user of its host, say);
    # the endpoint waits on all of them at once, so silent ones cost nothing.
    sock, ready = raw_test(veth, server)
    address = (SERVER_IP, ready["ports"][0])
    with netns.entered_path(veth.client.netns_path):
        silent = [socket.create_connection(address, timeout=5) for _ in range(admission.PENDING_MAX + 4)]
        client = socket.create_connection(address, timeout=5)
    try:
        client.sendall(bytes.fromhex(ready["data_token"]))
        started = time.monotonic()
        send(sock, "start")
        assert reply(sock)["type"] == "started"
        assert time.monotonic() - started < 1.5  # not a wait on the silent ones, one after another
        for other in silent:
            assert other.recv(1) == b""  # the oldest closed for newer ones, the rest once one was admitted
        client.close()
        send(sock, "stop")
        assert reply(sock)["type"] == "stopped"
    finally:
        for other in [*silent, client, sock]:
            other.close()
    server.wait_for(lambda: server.endpoints() == [])


# ---- fuzz


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


# Values that break a field: wrong types, edges of ranges, long and odd text, nesting.
_odd = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            -1,
            1.5,
            2**31,
            2**63,
            -(2**63) - 1,
            10**30,
            1e308,
            "",
            "x" * 600,
            "\u0000",
            "\ud800",
            "TCP_STREAM",
            "ab" * 32,
            [],
            {},
            [0] * 70,
            {"": None},
            [[[[]]]],
        ]
    ),
    st.integers(),
    st.text(max_size=12),
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=4,
)


def _valid(kind: str) -> dict:
    fields = {
        "hello": {"client_nonce": "ab" * 32, "software": "fuzz"},
        "auth": {"mac": "cd" * 32},
        "test": {"config": protocol.config_to_wire(TestConfig(test=TestName.TCP_RR, duration_s=0.5))},
        "start": {},
        "mark": {},
        "stop": {},
        "bye": {},
    }[kind]
    return {"v": protocol.VERSION, "type": kind, **fields}


@st.composite
def _mutated(draw) -> bytes:
    """A valid client message with one thing wrong: a key dropped or added, a value, the version, the type."""
    message = _valid(draw(st.sampled_from(["hello", "auth", "test", "start", "mark", "stop", "bye"])))
    where = message["config"] if "config" in message and draw(st.booleans()) else message
    how = draw(st.sampled_from(["drop", "add", "replace", "version", "type"]))
    keys = sorted(where)
    if how == "drop" and keys:
        del where[draw(st.sampled_from(keys))]
    elif how == "add":
        where[draw(st.text(max_size=8))] = draw(_odd)
    elif how == "replace" and keys:
        where[draw(st.sampled_from(keys))] = draw(_odd)
    elif how == "version":
        message["v"] = draw(_odd)
    else:
        message["type"] = draw(_odd)
    return _frame(json.dumps(message).encode())


@st.composite
def _truncated(draw) -> bytes:
    frame = _frame(json.dumps(_valid(draw(st.sampled_from(["hello", "test"])))).encode())
    return frame[: draw(st.integers(0, len(frame) - 1))]


_payloads = st.one_of(
    st.binary(max_size=64),  # anything at all
    st.binary(max_size=256).map(_frame),  # framed garbage
    _json.map(lambda v: _frame(json.dumps(v).encode())),  # framed JSON of any shape
    _mutated(),  # valid messages, mutated
    _mutated(),
    _truncated(),  # valid frames, cut short
    st.sampled_from(sorted(protocol.CLIENT_TYPES)).map(lambda k: _frame(json.dumps(_valid(k)).encode())),  # any order
    st.integers(protocol.MAX_FRAME + 1, 2**32 - 1).map(lambda n: n.to_bytes(4, "big") + b"{}"),  # oversized
    st.integers(1, 3000).map(lambda n: _frame(b"[" * n + b"]" * n)),  # deep nesting
    st.sampled_from(
        [
            b'{"v":1,"type":"hello","client_nonce":NaN}',
            b'{"v":1,"v":1,"type":"bye"}',
            b'{"v":1e999,"type":"bye"}',
            b"\xff\xfe{}",
            b'{"v":' + b"9" * 5000 + b"}",
        ]
    ).map(_frame),
)
_STAGES = st.sampled_from(["fresh", "after hello", "after auth"])
# Each example throws this many messages, one connection each: generating is the slow part.
_PER_EXAMPLE = 4


def test_fuzzed_control_messages_never_crash_hang_or_grow_the_server(veth, server):
    assert bench.measure_remote(target(veth, server), TestConfig(test=TestName.TCP_RR, **SHORT)).metrics
    server.wait_for(lambda: server.process.num_threads() <= 2)
    before = (server.process.memory_info().rss, server.process.num_threads(), server.process.num_fds())
    thrown = 0

    @settings(
        max_examples=FUZZ_MESSAGES // _PER_EXAMPLE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases=st.lists(st.tuples(_STAGES, _payloads), min_size=_PER_EXAMPLE, max_size=_PER_EXAMPLE))
    def throw(cases: list[tuple[str, bytes]]) -> None:
        for stage, payload in cases:
            throw_one(stage, payload)

    def throw_one(stage: str, payload: bytes) -> None:
        nonlocal thrown
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(5)
            sock.connect((SERVER_IP, server.port))
            if stage == "after hello":
                send(sock, "hello", client_nonce=os.urandom(32).hex(), software="fuzz")
                assert reply(sock)["type"] == "challenge"
            elif stage == "after auth":
                handshake(sock)
                assert reply(sock)["type"] == "welcome"
            sock.sendall(payload)
            thrown += 1
            sock.shutdown(socket.SHUT_WR)
            # Whatever it was, the server answers with well-formed messages and closes promptly.
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            while received:
                length = int.from_bytes(received[:4], "big")
                protocol.decode(received[4 : 4 + length], protocol.SERVER_TYPES)
                received = received[4 + length :]
        finally:
            sock.close()

    started = time.monotonic()
    with netns.entered_path(veth.client.netns_path):
        throw()
    elapsed = time.monotonic() - started
    assert thrown >= FUZZ_MESSAGES
    server.wait_for(lambda: server.process.num_threads() <= before[1] and server.endpoints() == [])
    rss, threads, fds = server.process.memory_info().rss, server.process.num_threads(), server.process.num_fds()
    assert rss < before[0] + 32 * 1024 * 1024, (before, rss)
    assert threads <= before[1] and fds <= before[2] + 2, (before, threads, fds)
    assert bench.measure_remote(target(veth, server), TestConfig(test=TestName.TCP_STREAM, **SHORT)).metrics
    print(
        f"fuzz: {thrown} messages in {elapsed:.1f} s; server RSS {before[0] >> 20} -> {rss >> 20} MiB, "
        f"threads {before[1]} -> {threads}, fds {before[2]} -> {fds}"
    )
