"""Runs one test between two sites and samples it: the measured window.

Sequence: the parent opens the listening socket inside the server namespace,
forks the server and client endpoints, waits until every connection is up,
releases them together, lets the warm-up pass, then samples CPU times and the
shared counters at the window start, every ``interval_s`` and at the window
end. Afterwards it stops the loops and collects each endpoint's report.
Sampling happens here, outside both endpoint processes, so it costs them
nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from vdevperf.errors import LoadError
from vdevperf.load import endpoint, rr, stream
from vdevperf.load.endpoint import Channel, Counters, Endpoint
from vdevperf.measure import cpu
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import TestConfig, TestName
from vdevperf.topology import netns

Loop = Callable[[socket.socket, TestConfig, memoryview], None]

# Which loop runs on each side, per test: (client loop, server loop).
LOOPS: dict[TestName, tuple[Loop, Loop]] = {
    TestName.TCP_STREAM: (stream.send_loop, stream.recv_loop),
    TestName.TCP_RR: (rr.request_loop, rr.response_loop),
}

SETUP_TIMEOUT_S = 10.0
FINISH_TIMEOUT_S = 10.0
TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)


@dataclass(frozen=True)
class Side:
    """Where one end of the load runs: a namespace path (None: the current one), address, CPU."""

    netns_path: str | None
    address: str
    cpu: int | None = None


def _socket_facts(sock: socket.socket) -> dict:
    """Effective socket settings worth keeping with a result."""
    facts = {
        "sndbuf_bytes": sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        "rcvbuf_bytes": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
    }
    if sock.type == socket.SOCK_STREAM:
        raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16)
        facts["congestion_control"] = raw.split(b"\0", 1)[0].decode()
    return facts


def _drive(channel: Channel, sock: socket.socket, cpu: int | None, loop: Loop, cfg: TestConfig,
           slots: memoryview) -> None:
    """Report readiness, wait for the common start, run the loop, report the end."""
    channel.send({"event": "ready", "placement": endpoint.placement(cpu), "socket": _socket_facts(sock)})
    channel.wait_go()
    loop(sock, cfg, slots)
    sock.close()
    channel.send({"event": "done"})


def _serve(listener: socket.socket, loop: Loop, cfg: TestConfig) -> endpoint.RoleBody:
    def body(channel: Channel, slots: memoryview) -> None:
        conn, _ = listener.accept()
        listener.close()
        _drive(channel, conn, cfg.server_cpu, loop, cfg, slots)
    return body


def _connect(address: tuple, family: int, loop: Loop, cfg: TestConfig) -> endpoint.RoleBody:
    def body(channel: Channel, slots: memoryview) -> None:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(SETUP_TIMEOUT_S)
        sock.connect(address)
        sock.settimeout(None)
        _drive(channel, sock, cfg.client_cpu, loop, cfg, slots)
    return body


def _listen(site: Side, family: int) -> socket.socket:
    """A listening socket created inside the server's namespace (sockets keep their netns)."""
    with netns.entered_path(site.netns_path):
        listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((site.address, 0))
    listener.listen(16)
    return listener


class _Watch:
    """Samples CPU, counters and where each endpoint is running."""

    def __init__(self, counters: Counters, endpoints: list[Endpoint]) -> None:
        self.counters = counters
        self.procs = {ep.role: psutil.Process(ep.pid) for ep in endpoints}
        self.observed: dict[str, Counter] = {role: Counter() for role in self.procs}
        self.start = 0.0
        self.samples: list[Sample] = []

    def take(self) -> None:
        now = time.monotonic()
        if not self.samples:
            self.start = now
        self.samples.append(Sample(t_s=now - self.start, cpu=cpu.snapshot(), counters=self.counters.read()))
        for role, proc in self.procs.items():
            try:
                self.observed[role][proc.cpu_num()] += 1
            except psutil.Error:
                pass


def run(cfg: TestConfig, client: Side, server: Side,
        on_spawn: Callable[[int], None] = lambda pid: None) -> RawRun:
    """Run ``cfg`` from ``client`` to ``server`` and return the raw samples.

    ``on_spawn(pid)`` learns every endpoint pid as it starts (for the ledger).
    """
    client_loop, server_loop = LOOPS[cfg.test]
    family = socket.AF_INET if cfg.ip_version == 4 else socket.AF_INET6
    counters = Counters(2)
    endpoints: list[Endpoint] = []
    listener = _listen(server, family)
    try:
        port = listener.getsockname()[1]
        endpoints.append(endpoint.start("server", server.netns_path, cfg.server_cpu,
                                        _serve(listener, server_loop, cfg), counters.slots(1)))
        on_spawn(endpoints[-1].pid)
        listener.close()
        endpoints.insert(0, endpoint.start("client", client.netns_path, cfg.client_cpu,
                                           _connect((server.address, port), family, client_loop, cfg),
                                           counters.slots(0)))
        on_spawn(endpoints[0].pid)
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        ready = {ep.role: ep.receive(deadline) for ep in endpoints}
        watch = _Watch(counters, endpoints)
        for ep in endpoints:
            ep.go()
        time.sleep(cfg.warmup_s)
        watch.take()
        end = watch.start + cfg.duration_s
        while (now := time.monotonic()) < end:
            time.sleep(min(cfg.interval_s - (now - watch.start) % cfg.interval_s, end - now))
            watch.take()
        endpoints[0].stop()
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        for ep in endpoints:
            ep.receive(deadline)
            ep.join(deadline)
            if not os.WIFEXITED(ep.exit_status) or os.WEXITSTATUS(ep.exit_status) != 0:
                raise LoadError(f"{ep.role} endpoint", f"exited with wait status {ep.exit_status}")
        final = counters.read()
    finally:
        listener.close()
        for ep in endpoints:
            ep.close()
    reports = {}
    for index, ep in enumerate(endpoints):
        reports[ep.role] = {
            "pid": ep.pid,
            "placement": dict(ready[ep.role]["placement"],
                              observed_cpus={str(k): v for k, v in sorted(watch.observed[ep.role].items())}),
            "socket": ready[ep.role]["socket"],
            "final_counters": dict(zip(endpoint.SLOTS, final[index * len(endpoint.SLOTS):
                                                              (index + 1) * len(endpoint.SLOTS)], strict=True)),
        }
    return RawRun(samples=watch.samples, endpoints=reports)
