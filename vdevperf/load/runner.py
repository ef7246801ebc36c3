"""Runs one test between two sides with one or more flows, and samples it: the measured window.

Sequence: the parent opens each flow's server socket inside the server
namespace, forks the server and client endpoints (one process each, so
flows never share an interpreter lock), waits until every one is ready,
releases them together (the start barrier), lets the warm-up pass, then
reads CPU times and the shared counters at the window start, every
``interval_s`` and at the window end, and the latency histograms at both
edges. Afterwards it stops the loops as the test prescribes and collects
each endpoint's report. Sampling happens here, outside the endpoint
processes, so it costs them nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from vdevperf.errors import LoadError
from vdevperf.load import endpoint
from vdevperf.load.context import ROLES, SLOTS, LoopContext, StopLoad, endpoint_index
from vdevperf.load.endpoint import Channel, Counters, Endpoint
from vdevperf.load.tests import TESTS, Loop, TestDef
from vdevperf.measure import capture as capture_probe
from vdevperf.measure import cpu, histogram
from vdevperf.measure.capture import CaptureSpec
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import TestConfig
from vdevperf.topology import netns

SETUP_TIMEOUT_S = 10.0
FINISH_TIMEOUT_S = 10.0
# How long a UDP_RR client waits for a response before it counts the transaction lost.
UDP_RR_TIMEOUT_S = 1.0
TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)


@dataclass(frozen=True)
class Side:
    """Where one end of the load runs: a namespace path (None: the current one), address, CPU."""

    netns_path: str | None
    address: str
    cpu: int | None = None


def _set_buffers(sock: socket.socket, sndbuf: int | None, rcvbuf: int | None) -> None:
    # Before connect/listen, so TCP's window scale is chosen with the final size.
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)


def _socket_facts(sock: socket.socket) -> dict:
    """Effective socket settings worth keeping with a result (the kernel doubles SO_*BUF)."""
    facts = {
        "sndbuf_bytes": sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        "rcvbuf_bytes": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
    }
    if sock.type == socket.SOCK_STREAM:
        raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16)
        facts["congestion_control"] = raw.split(b"\0", 1)[0].decode()
    return facts


def _drive(channel: Channel, ctx: LoopContext, loop: Loop, cpu_wanted: int | None, facts: dict) -> None:
    """Report readiness, wait for the common start, run the loop until it ends or is stopped."""
    channel.send({"event": "ready", "placement": endpoint.placement(cpu_wanted), "socket": facts})
    channel.wait_go()
    try:
        loop(ctx)
    except StopLoad:
        pass
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # a late stop must not break the report
    if ctx.sock is not None:
        ctx.sock.close()
    channel.send({"event": "done"})


def _server_socket(tdef: TestDef, side: Side, family: int, cfg: TestConfig) -> socket.socket:
    """A flow's server socket, created inside the server's namespace (sockets keep their netns)."""
    kind = socket.SOCK_DGRAM if tdef.name.is_udp else socket.SOCK_STREAM
    with netns.entered_path(side.netns_path):
        sock = socket.socket(family, kind)
    try:
        _set_buffers(sock, cfg.server_sndbuf, cfg.server_rcvbuf)
        sock.bind((side.address, 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _server(tdef: TestDef, sock: socket.socket, cfg: TestConfig, shared: Counters, index: int) -> endpoint.RoleBody:
    def body(channel: Channel) -> None:
        data = sock
        if sock.type == socket.SOCK_STREAM and not tdef.per_connection:
            data, _ = sock.accept()
            sock.close()
        ctx = LoopContext(data, cfg, shared.slots(index), shared.hist(index))
        _drive(channel, ctx, tdef.server_loop, cfg.server_cpu, _socket_facts(data))
    return body


def _client(tdef: TestDef, address: tuple, family: int, cfg: TestConfig, shared: Counters,
            index: int) -> endpoint.RoleBody:
    kind = socket.SOCK_DGRAM if tdef.name.is_udp else socket.SOCK_STREAM

    def new_socket() -> socket.socket:
        sock = socket.socket(family, kind)
        _set_buffers(sock, cfg.client_sndbuf, cfg.client_rcvbuf)
        return sock

    def connect() -> socket.socket:
        sock = new_socket()
        sock.connect(address)
        return sock

    def body(channel: Channel) -> None:
        ctx = LoopContext(None, cfg, shared.slots(index), shared.hist(index))
        if tdef.per_connection:
            ctx.connect = connect
            with new_socket() as probe:
                facts = _socket_facts(probe)
        else:
            ctx.sock = sock = new_socket()
            sock.settimeout(SETUP_TIMEOUT_S)
            sock.connect(address)
            sock.settimeout(None)
            if tdef.name.is_udp and tdef.latency:
                # At the socket level, not Python's settimeout: that would poll() before every recv.
                timeval = struct.pack("ll", int(UDP_RR_TIMEOUT_S), int(UDP_RR_TIMEOUT_S % 1 * 1e6))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            facts = _socket_facts(sock)
        _drive(channel, ctx, tdef.client_loop, cfg.client_cpu, facts)
    return body


class _Watch:
    """Samples CPU, counters and where each endpoint is running."""

    def __init__(self, shared: Counters, endpoints: list[Endpoint]) -> None:
        self.shared = shared
        self.procs = [psutil.Process(ep.pid) for ep in endpoints]
        self.own_cpu_s: list[float] = []
        self.observed: list[Counter] = [Counter() for _ in endpoints]
        self.start = 0.0
        self.samples: list[Sample] = []
        self.histograms: list[list[list[int]]] = []

    def take(self, histograms: bool = False) -> None:
        """One sample; at the window edges also the latency histograms, read right after the counters."""
        now = time.monotonic()
        if not self.samples:
            self.start = now
        counters = self.shared.read()
        if histograms:
            self.histograms.append([self.shared.read_hist(endpoint_index(flow, "client"))
                                    for flow in range(self.shared.endpoints // len(ROLES))])
        machine = cpu.snapshot()
        proc_cpu = []
        for seen, proc in zip(self.observed, self.procs, strict=True):
            # One read of /proc/PID/stat gives both where it runs and what it used.
            try:
                with proc.oneshot():
                    seen[proc.cpu_num()] += 1
                    times = proc.cpu_times()
            except psutil.Error:
                raise LoadError(f"endpoint {proc.pid}", "exited during the measurement") from None
            proc_cpu.append(times.user + times.system)
        self.samples.append(Sample(t_s=now - self.start, cpu=machine, counters=counters, proc_cpu_s=proc_cpu))
        # This process does nothing but sample during the window: its CPU time is the cost of
        # measuring (process_time is exact; /proc's 10 ms ticks would hide it).
        self.own_cpu_s.append(time.process_time())


def _window_histograms(start: list[list[int]], end: list[list[int]]) -> list[dict[int, int]]:
    return [histogram.sparse(b - a for a, b in zip(s, e, strict=True)) for s, e in zip(start, end, strict=True)]


def _stop(endpoints: list[Endpoint], tdef: TestDef) -> None:
    """End the load in the test's order, then wait for every endpoint's report and exit."""
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    for role in tdef.stop:
        stopped = [ep for ep in endpoints if ep.role == role]
        for ep in stopped:
            ep.stop()
        for ep in stopped:
            ep.receive(deadline)
    for ep in endpoints:
        if ep.role not in tdef.stop:
            ep.receive(deadline)
    for ep in endpoints:
        ep.join(deadline)
        if not os.WIFEXITED(ep.exit_status) or os.WEXITSTATUS(ep.exit_status) != 0:
            raise LoadError(f"{ep.role} endpoint", f"exited with wait status {ep.exit_status}")


def run(cfg: TestConfig, client: Side, server: Side, on_spawn: Callable[[int], None] = lambda pid: None,
        capture: CaptureSpec | None = None) -> RawRun:
    """Run ``cfg`` (all its flows) from ``client`` to ``server`` and return the raw measurements.

    ``on_spawn(pid)`` learns every endpoint pid as it starts (for the ledger);
    ``capture`` asks for a frame-size probe during the warm-up.
    """
    tdef = TESTS[cfg.test]
    family = socket.AF_INET if cfg.ip_version == 4 else socket.AF_INET6
    shared = Counters(cfg.flows * len(ROLES), histogram.BUCKETS if tdef.latency else 0)
    endpoints: list[Endpoint] = []
    prober: Endpoint | None = None
    captured = None
    server_socks = [_server_socket(tdef, server, family, cfg) for _ in range(cfg.flows)]
    try:
        for flow, sock in enumerate(server_socks):
            ep = endpoint.start("server", server.netns_path, server.cpu,
                                _server(tdef, sock, cfg, shared, endpoint_index(flow, "server")))
            endpoints.append(ep)
            on_spawn(ep.pid)
        for flow, sock in enumerate(server_socks):
            address = (server.address, sock.getsockname()[1])
            sock.close()  # the server endpoint has its own copy
            ep = endpoint.start("client", client.netns_path, client.cpu,
                                _client(tdef, address, family, cfg, shared, endpoint_index(flow, "client")))
            endpoints.insert(endpoint_index(flow, "client"), ep)
            on_spawn(ep.pid)
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        ready = [ep.receive(deadline) for ep in endpoints]
        watch = _Watch(shared, endpoints)
        for ep in endpoints:
            ep.go()
        if capture is not None:
            prober = capture_probe.start(capture)
            on_spawn(prober.pid)
        time.sleep(cfg.warmup_s)
        if prober is not None:
            # Waits until the probe is done: it never overlaps the measured window.
            captured = capture_probe.finish(prober, capture)
        watch.take(histograms=tdef.latency)
        end = watch.start + cfg.duration_s
        while (now := time.monotonic()) < end:
            time.sleep(min(cfg.interval_s - (now - watch.start) % cfg.interval_s, end - now))
            # The sample that closes the window also takes the histograms.
            watch.take(histograms=tdef.latency and time.monotonic() >= end)
        _stop(endpoints, tdef)
        final = shared.read()
    finally:
        for sock in server_socks:
            sock.close()
        for ep in [*endpoints, *([prober] if prober else [])]:
            ep.close()
    reports = []
    for index, ep in enumerate(endpoints):
        reports.append({
            "flow": index // len(ROLES),
            "role": ep.role,
            "pid": ep.pid,
            "placement": dict(ready[index]["placement"],
                              observed_cpus={str(k): v for k, v in sorted(watch.observed[index].items())}),
            "socket": ready[index]["socket"],
            "final_counters": dict(zip(SLOTS, final[index * len(SLOTS):(index + 1) * len(SLOTS)], strict=True)),
        })
    return RawRun(samples=watch.samples, endpoints=reports,
                  histograms=_window_histograms(*watch.histograms) if tdef.latency else [],
                  sampler_cpu_s=watch.own_cpu_s[-1] - watch.own_cpu_s[0], capture=captured)
