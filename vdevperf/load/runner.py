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

The server half can also run on another host (a vdevperf server, see
vdevperf.remote): a RemoteServer then opens the server endpoints there, and
every sample adds the server's counters, per-CPU times and endpoint CPU,
read there at the same instant. The server-side pieces here (server socket,
server role, Watch, finish) are what the vdevperf server runs too.
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
from typing import Protocol

import psutil

from vdevperf.counters import ROLES, SLOTS, endpoint_index
from vdevperf.errors import LoadError
from vdevperf.load import endpoint
from vdevperf.load.context import Loop, LoopContext, StopLoad
from vdevperf.load.endpoint import Channel, Counters, Endpoint
from vdevperf.load.tests import TESTS, TestDef
from vdevperf.measure import capture as capture_probe
from vdevperf.measure import cpu, histogram, noise
from vdevperf.measure.capture import CaptureSpec
from vdevperf.measure.cpu import CpuSnapshot
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


# What a client sends on a new data connection before its loop starts (a remote session's data
# token), and what a server endpoint does with its socket before its loop (admit only that token).
Greet = Callable[[socket.socket], None]
Admit = Callable[[socket.socket], socket.socket]


@dataclass(frozen=True)
class RemoteReading:
    """The server half's state at one instant: its clock, per-CPU times, per flow its
    endpoint's counters (SLOTS) and CPU seconds."""

    t_s: float
    cpu: CpuSnapshot
    counters: list[list[int]]
    proc_cpu_s: list[float]


class RemoteServer(Protocol):
    """A server half run by another host, driven through a control connection."""

    def open(self, cfg: TestConfig) -> tuple[list[tuple], Greet]:
        """Open the server endpoints of ``cfg``; per flow the address to connect to, and the greeting."""

    def start(self) -> list[dict]:
        """Wait for the server endpoints to be ready and release them; per flow their ready message."""

    def mark(self) -> Callable[[], RemoteReading]:
        """Ask for a reading now; the returned function waits for it."""

    def stop(self) -> list[dict]:
        """End the server endpoints as the test prescribes; per flow observed CPUs and final counters."""


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


def server_socket(tdef: TestDef, side: Side, family: int, cfg: TestConfig) -> socket.socket:
    """A flow's server socket, created inside the server's namespace (sockets keep their netns)."""
    kind = socket.SOCK_DGRAM if tdef.traits.udp else socket.SOCK_STREAM
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
        ctx = LoopContext(data, cfg, shared.slots(index), shared.hist(index))
        _drive(channel, ctx, tdef.server_loop, cfg.server_cpu, _socket_facts(data))

    return body


def _client(
    tdef: TestDef, address: tuple, family: int, cfg: TestConfig, shared: Counters, index: int, greet: Greet | None
) -> endpoint.RoleBody:
    kind = socket.SOCK_DGRAM if tdef.traits.udp else socket.SOCK_STREAM

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
        if tdef.traits.per_connection:
            ctx.connect = connect
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


class Watch:
    """Samples CPU, counters and where each local endpoint is running (and the remote half, if any)."""

    def __init__(self, shared: Counters, endpoints: dict[int, Endpoint], remote: RemoteServer | None = None) -> None:
        self.shared = shared
        self.indexes = sorted(endpoints)
        self.procs = [psutil.Process(endpoints[i].pid) for i in self.indexes]
        self.remote = remote
        self.own_cpu_s: list[float] = []
        self.observed: dict[int, Counter] = {i: Counter() for i in self.indexes}
        self.start = 0.0
        self.remote_start = 0.0
        self.samples: list[Sample] = []
        self.histograms: list[list[list[int]]] = []

    def read(self) -> tuple[list[int], CpuSnapshot, list[float]]:
        """Every shared counter, the per-CPU times, and per local endpoint its CPU seconds; counts where
        each endpoint runs."""
        counters = self.shared.read()
        machine = cpu.snapshot()
        return counters, machine, self._proc_cpu()

    def _proc_cpu(self) -> list[float]:
        seconds = []
        for index, proc in zip(self.indexes, self.procs, strict=True):
            # One read of /proc/PID/stat gives both where it runs and what it used.
            try:
                with proc.oneshot():
                    self.observed[index][proc.cpu_num()] += 1
                    times = proc.cpu_times()
            except psutil.Error:
                raise LoadError(f"endpoint {proc.pid}", "exited during the measurement") from None
            seconds.append(times.user + times.system)
        return seconds

    def take(self, histograms: bool = False) -> None:
        """One sample; at the window edges also the latency histograms, read right after the counters."""
        now = time.monotonic()
        if not self.samples:
            self.start = now
        # The remote half reads its side while this one reads here: the request goes out first.
        pending = self.remote.mark() if self.remote is not None else None
        counters = self.shared.read()
        if histograms:
            self.histograms.append(
                [
                    self.shared.read_hist(endpoint_index(flow, "client"))
                    for flow in range(self.shared.endpoints // len(ROLES))
                ]
            )
        machine = cpu.snapshot()
        local_cpu = self._proc_cpu()
        proc_cpu = [0.0] * self.shared.endpoints
        for index, seconds in zip(self.indexes, local_cpu, strict=True):
            proc_cpu[index] = seconds
        remote_cpu = remote_t_s = None
        if pending is not None:
            reading = pending()
            if not self.samples:
                self.remote_start = reading.t_s
            for flow, values in enumerate(reading.counters):
                at = endpoint_index(flow, "server") * len(SLOTS)
                counters[at : at + len(SLOTS)] = values
                proc_cpu[endpoint_index(flow, "server")] = reading.proc_cpu_s[flow]
            remote_cpu, remote_t_s = reading.cpu, reading.t_s - self.remote_start
        self.samples.append(
            Sample(
                t_s=now - self.start,
                cpu=machine,
                counters=counters,
                proc_cpu_s=proc_cpu,
                remote_cpu=remote_cpu,
                remote_t_s=remote_t_s,
            )
        )
        # This process does nothing but sample during the window: its CPU time is the cost of
        # measuring (process_time is exact; /proc's 10 ms ticks would hide it).
        self.own_cpu_s.append(time.process_time())


def _window_histograms(start: list[list[int]], end: list[list[int]]) -> list[dict[int, int]]:
    return [histogram.sparse(b - a for a, b in zip(s, e, strict=True)) for s, e in zip(start, end, strict=True)]


def finish(endpoints: list[Endpoint], tdef: TestDef, remote: RemoteServer | None = None) -> list[dict]:
    """End the load in the test's order, then wait for every endpoint's report and exit.

    Returns the remote half's per-flow reports (none without one).
    """
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    remote_reports: list[dict] | None = None
    for role in tdef.traits.stop:
        stopped = [ep for ep in endpoints if ep.role == role]
        for ep in stopped:
            ep.stop()
        for ep in stopped:
            ep.receive(deadline)
        if role == "server" and remote is not None:
            remote_reports = remote.stop()
    if remote is not None and remote_reports is None:
        # A server that ends at EOF: its clients were stopped above.
        remote_reports = remote.stop()
    for ep in endpoints:
        if ep.role not in tdef.traits.stop:
            ep.receive(deadline)
    for ep in endpoints:
        ep.join(deadline)
        if not os.WIFEXITED(ep.exit_status) or os.WEXITSTATUS(ep.exit_status) != 0:
            raise LoadError(f"{ep.role} endpoint", f"exited with wait status {ep.exit_status}")
    return remote_reports or []


def run(
    cfg: TestConfig,
    client: Side,
    server: Side | RemoteServer,
    on_spawn: Callable[[int], None] = lambda pid: None,
    capture: CaptureSpec | None = None,
) -> RawRun:
    """Run ``cfg`` (all its flows) from ``client`` to ``server`` and return the raw measurements.

    ``server`` is a Side here or a RemoteServer elsewhere; ``on_spawn(pid)`` learns every
    local endpoint pid as it starts (for the ledger); ``capture`` asks for a frame-size probe
    during the warm-up.
    """
    tdef = TESTS[cfg.test]
    family = socket.AF_INET if cfg.ip_version == 4 else socket.AF_INET6
    shared = Counters(cfg.flows * len(ROLES), histogram.BUCKETS if tdef.traits.latency else 0)
    remote = None if isinstance(server, Side) else server
    local: dict[int, Endpoint] = {}
    prober: Endpoint | None = None
    captured = None
    server_socks = [] if remote is not None else [server_socket(tdef, server, family, cfg) for _ in range(cfg.flows)]
    try:
        greet: Greet | None = None
        if remote is not None:
            targets, greet = remote.open(cfg)
        else:
            targets = []
            for flow, sock in enumerate(server_socks):
                index = endpoint_index(flow, "server")
                local[index] = ep = endpoint.start(
                    "server",
                    server.netns_path,
                    server.cpu,
                    server_role(tdef, sock, cfg, shared, index),
                    keep_fds=(sock.fileno(),),
                )
                on_spawn(ep.pid)
                targets.append((server.address, sock.getsockname()[1]))
            for sock in server_socks:
                sock.close()  # the server endpoints have their own copies
        for flow, address in enumerate(targets):
            index = endpoint_index(flow, "client")
            local[index] = ep = endpoint.start(
                "client", client.netns_path, client.cpu, _client(tdef, address, family, cfg, shared, index, greet)
            )
            on_spawn(ep.pid)
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        ready = {index: local[index].receive(deadline) for index in sorted(local)}
        watch = Watch(shared, local, remote)
        if remote is not None:
            ready |= {endpoint_index(flow, "server"): message for flow, message in enumerate(remote.start())}
        for ep in local.values():
            ep.go()
        if capture is not None:
            prober = capture_probe.start(capture)
            on_spawn(prober.pid)
        time.sleep(cfg.warmup_s)
        if prober is not None:
            # Waits until the probe is done: it never overlaps the measured window.
            captured = capture_probe.finish(prober, capture)
        # What else runs, read just outside the window's edges so that it costs the window nothing.
        others = noise.processes()
        moved = {index: noise.migrations(ep.pid) for index, ep in local.items()}
        watch.take(histograms=tdef.traits.latency)
        end = watch.start + cfg.duration_s
        closed = False
        while not closed:
            # Always at least one sample after the first, even when taking one outlasts the
            # window (hundreds of endpoints): every figure divides by the window's length.
            if (now := time.monotonic()) < end:
                time.sleep(min(cfg.interval_s - (now - watch.start) % cfg.interval_s, end - now))
            closed = time.monotonic() >= end
            # The sample that closes the window also takes the histograms.
            watch.take(histograms=tdef.traits.latency and closed)
        moved = {index: _grown(before, noise.migrations(local[index].pid)) for index, before in moved.items()}
        foreign = noise.foreign_cpu(others, noise.processes(), watch.samples[-1].t_s, len(watch.samples[0].cpu))
        remote_reports = finish([local[index] for index in sorted(local)], tdef, remote)
        final = shared.read()
    finally:
        for sock in server_socks:
            sock.close()
        for ep in [*local.values(), *([prober] if prober else [])]:
            ep.close()
    reports = []
    for index in range(cfg.flows * len(ROLES)):
        flow, role = index // len(ROLES), ROLES[index % len(ROLES)]
        if index in local:
            observed = {str(cpu_num): n for cpu_num, n in watch.observed[index].items()}
            counters = dict(zip(SLOTS, final[index * len(SLOTS) : (index + 1) * len(SLOTS)], strict=True))
            pid = local[index].pid
            ready[index]["placement"]["migrations"] = moved[index]
        else:
            observed = remote_reports[flow]["observed_cpus"]
            counters = remote_reports[flow]["final_counters"]
            pid = ready[index]["pid"]
        reports.append(
            {
                "flow": flow,
                "role": role,
                "pid": pid,
                "placement": dict(
                    ready[index]["placement"], observed_cpus=dict(sorted(observed.items(), key=lambda kn: int(kn[0])))
                ),
                "socket": ready[index]["socket"],
                "final_counters": counters,
            }
        )
    return RawRun(
        samples=watch.samples,
        endpoints=reports,
        histograms=_window_histograms(*watch.histograms) if tdef.traits.latency else [],
        sampler_cpu_s=watch.own_cpu_s[-1] - watch.own_cpu_s[0],
        capture=captured,
        foreign=foreign,
    )


def _grown(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before
