"""Runs one test between a client side and a server half with one or more flows, and samples it.

Sequence: the server half opens each flow's server endpoint (here: a
LocalServer, load.server; on another host: a session with a vdevperf
server, remote.client), the client endpoints connect to them (one process
each, so flows never share an interpreter lock), and once every one is
ready all are released together (the start barrier). The warm-up passes
(with the frame-size probe, if asked), then a Watch reads CPU times and the
counters at the window start, every ``interval_s`` and at the window end,
and the latency histograms at both edges, asking the server half for its
reading at the same instants. For tests that keep one TCP connection per
flow, the sampler also reads each connection's TCP_INFO through a copy of
its socket (load.borrowed), given back at the window's closing edge, before
the loops end. Afterwards the loops are stopped as the test prescribes and
every endpoint's report is collected. Sampling happens here, outside the
endpoint processes, so it costs them nothing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from vdevperf.counters import ROLES, SLOTS, endpoint_index
from vdevperf.load import endpoint, probe
from vdevperf.load.borrowed import Borrowed
from vdevperf.load.endpoint import Counters, Endpoint
from vdevperf.load.roles import SETUP_TIMEOUT_S, Greet, Side, client_role
from vdevperf.load.tests import TESTS, TestDef, flow_def
from vdevperf.measure import histogram, noise
from vdevperf.measure.capture import CaptureSpec
from vdevperf.measure.endpoints import EndpointReport, Finished, Ready
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.measure.watch import Reading, Watch
from vdevperf.model import TestConfig

# Called with the window's samples so far, after each new one.
OnInterval = Callable[[Sequence[Sample]], None]


class ServerHalf(Protocol):
    """The server endpoints of a test, on this host or another, driven by the client side's run."""

    def open(self, cfg: TestConfig) -> tuple[list[tuple[str, int]], Greet | None]:
        """Open the server endpoints of ``cfg``; per flow the address to connect to, and the greeting."""
        ...

    def start(self) -> list[Ready]:
        """Wait for the server endpoints to be ready and release them; per flow its Ready."""
        ...

    def edge(self) -> None:
        """The window opens or closes now (read what is read only at its edges)."""
        ...

    def mark(self) -> Callable[[], Reading]:
        """Ask for a reading now; the returned function waits for it."""
        ...

    def stop(self) -> list[Finished]:
        """End the server endpoints as the test prescribes; per flow what was seen of it."""
        ...


def _start_clients(
    cfg: TestConfig,
    client: Side,
    targets: list[tuple[str, int]],
    greet: Greet | None,
    shared: Counters,
    clients: dict[int, Endpoint],
    on_spawn: Callable[[int], None],
) -> None:
    """Fork a client endpoint per flow, each connecting to its flow's target (into ``clients`` as it goes)."""
    family = socket.AF_INET if cfg.ip_version == 4 else socket.AF_INET6
    for flow, address in enumerate(targets):
        index = endpoint_index(flow, "client")
        clients[index] = ep = endpoint.start(
            "client",
            client.netns_path,
            client.cpu,
            client_role(flow_def(cfg, flow), address, family, cfg, shared, index, greet),
        )
        on_spawn(ep.pid)


def _warm_up(cfg: TestConfig, capture: CaptureSpec | None, on_spawn: Callable[[int], None]) -> dict[str, object] | None:
    """Let the warm-up pass, probing frame sizes meanwhile if asked; the probe's summary."""
    prober = None
    try:
        if capture is not None:
            prober = probe.start(capture)
            on_spawn(prober.pid)
        time.sleep(cfg.warmup_s)
        # Waits until the probe is done: it never overlaps the measured window.
        return probe.finish(prober, capture) if prober is not None and capture is not None else None
    finally:
        if prober is not None:
            prober.close()


def _sample(
    cfg: TestConfig, tdef: TestDef, watch: Watch, server: ServerHalf, on_interval: OnInterval
) -> dict[str, object]:
    """The measured window: samples from its start to its end, every ``interval_s``, each shown to
    ``on_interval`` as it is taken; returns the CPU used meanwhile by processes outside the test."""
    # What else runs, read just outside the window's edges so that it costs the window nothing.
    others = noise.processes()
    watch.edge()
    server.edge()
    latency = tdef.traits.latency
    watch.take(histograms=latency)
    end = watch.start + cfg.duration_s
    closed = False
    while not closed:
        # Always at least one sample after the first, even when taking one outlasts the
        # window (hundreds of endpoints): every figure divides by the window's length.
        if (now := time.monotonic()) < end:
            time.sleep(min(cfg.interval_s - (now - watch.start) % cfg.interval_s, end - now))
        closed = time.monotonic() >= end
        # The sample that closes the window also takes the histograms.
        watch.take(histograms=latency and closed)
        on_interval(watch.samples)
    watch.edge()
    server.edge()
    return noise.foreign_cpu(others, noise.processes(), watch.samples[-1].t_s, len(watch.samples[0].cpu))


def _finish(cfg: TestConfig, clients: list[Endpoint], server: ServerHalf) -> list[Finished]:
    """End the load in each flow's order; the server half's per-flow reports.

    Every test stops its client before its server (traits' ``stop`` order), so across flows of
    different tests (--bidir) the clients any flow stops go first, then the server half stops
    its own and waits for all; clients left end at EOF."""
    stops = [flow_def(cfg, flow).traits.stop for flow in range(len(clients))]
    finished: list[Finished] | None = None
    for role in (r for r in ROLES if any(r in stop for stop in stops)):
        if role == "client":
            endpoint.finish([ep for ep, stop in zip(clients, stops, strict=True) if "client" in stop], stop=True)
        else:
            finished = server.stop()
    if finished is None:
        finished = server.stop()  # a server that ends at EOF: its clients were stopped above
    # Clients that end at EOF.
    endpoint.finish([ep for ep, stop in zip(clients, stops, strict=True) if "client" not in stop], stop=False)
    return finished


def _data_sockets(clients: list[Ready], servers: list[Ready]) -> list[tuple[int, int] | None]:
    """Per endpoint (endpoint order) its process and data socket's descriptor, where it runs on this host."""
    ends = [ready for pair in zip(clients, servers, strict=True) for ready in pair]
    return [None if ready.data_fd is None else (ready.pid, ready.data_fd) for ready in ends]


def _client_finished(watch: Watch, index: int, final: list[int]) -> Finished:
    return Finished(
        observed_cpus=dict(watch.observed[index]),
        final_counters=tuple(final[index * len(SLOTS) : (index + 1) * len(SLOTS)]),
        migrations=watch.migrations(index),
    )


def _reports(
    flows: int, clients: list[Ready], servers: list[Ready], client_ends: list[Finished], server_ends: list[Finished]
) -> list[EndpointReport]:
    """Every endpoint's report, in endpoint order (per flow its client, then its server)."""
    by_role = {"client": (clients, client_ends), "server": (servers, server_ends)}
    return [
        EndpointReport(flow, role, by_role[role][0][flow], by_role[role][1][flow])
        for flow in range(flows)
        for role in ROLES
    ]


def _window_histograms(start: list[list[int]], end: list[list[int]]) -> list[dict[int, int]]:
    return [histogram.sparse(b - a for a, b in zip(s, e, strict=True)) for s, e in zip(start, end, strict=True)]


def run(
    cfg: TestConfig,
    client: Side,
    server: ServerHalf,
    on_spawn: Callable[[int], None] = lambda pid: None,
    capture: CaptureSpec | None = None,
    on_interval: OnInterval = lambda samples: None,
) -> RawRun:
    """Run ``cfg`` (all its flows) from ``client`` to ``server`` and return the raw measurements.

    ``on_spawn(pid)`` learns every client endpoint pid as it starts (for the ledger); ``capture``
    asks for a frame-size probe during the warm-up; ``on_interval(samples)`` sees the window's samples
    so far after each one (live output). The caller owns ``server`` and closes it.
    """
    tdef = TESTS[cfg.test]
    shared = Counters(cfg.flows * len(ROLES), histogram.BUCKETS if tdef.traits.latency else 0)
    local: dict[int, Endpoint] = {}
    borrowed: Borrowed | None = None
    try:
        targets, greet = server.open(cfg)
        _start_clients(cfg, client, targets, greet, shared, local, on_spawn)
        clients = [local[i] for i in sorted(local)]
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        client_ready = [Ready.from_message(ep.pid, ep.receive(deadline)) for ep in clients]
        server_ready = server.start()
        if tdef.traits.tcp_info:
            borrowed = Borrowed(_data_sockets(client_ready, server_ready))
        watch = Watch(shared, {i: ep.pid for i, ep in local.items()}, server.mark, borrowed.read if borrowed else None)
        for ep in clients:
            ep.go()
        captured = _warm_up(cfg, capture, on_spawn)
        foreign = _sample(cfg, tdef, watch, server, on_interval)
        # Before the endpoints end: a borrowed copy would keep its socket open, and its peer from EOF.
        if borrowed is not None:
            borrowed.close()
        server_ends = _finish(cfg, clients, server)
        final = shared.read()
    finally:
        if borrowed is not None:
            borrowed.close()
        for ep in local.values():
            ep.close()
    client_ends = [_client_finished(watch, i, final) for i in sorted(local)]
    return RawRun(
        samples=watch.samples,
        endpoints=_reports(cfg.flows, client_ready, server_ready, client_ends, server_ends),
        histograms=_window_histograms(*watch.histograms) if tdef.traits.latency else [],
        sampler_cpu_s=watch.own_cpu_s[-1] - watch.own_cpu_s[0],
        capture=captured,
        foreign=foreign,
    )
