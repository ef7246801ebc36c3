"""The server half of a test on this host: one socket and one forked server endpoint per flow.

It is what runner.run drives through the ServerHalf interface, like a
session with a vdevperf server on another host (remote.client); and a
vdevperf server runs one per test for its client (remote.serving), with
``admit`` and ``guard`` letting in only that client's data connections and
``host_readings`` adding this host's clock and CPU times to every reading.
It has its own shared counters and its own Watch, so its readings are the
same whichever host asks.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from types import TracebackType

from vdevperf.counters import ROLES, SLOTS, endpoint_index
from vdevperf.errors import LoadError
from vdevperf.load import endpoint
from vdevperf.load.endpoint import Counters, Endpoint
from vdevperf.load.roles import SETUP_TIMEOUT_S, Admit, Greet, Side, server_role, server_socket
from vdevperf.load.tests import flow_def
from vdevperf.measure import cpu
from vdevperf.measure.endpoints import NOT_READ, Finished, Ready
from vdevperf.measure.watch import Reading, Watch
from vdevperf.model import TestConfig


class LocalServer:
    """One test's server endpoints on this host (a runner.ServerHalf); ``close`` kills what still runs."""

    def __init__(
        self,
        side: Side,
        on_spawn: Callable[[int], None] = lambda pid: None,
        admit: Admit | None = None,
        guard: Callable[[socket.socket], None] = lambda sock: None,
        host_readings: bool = False,
    ) -> None:
        self.side = side
        self.on_spawn = on_spawn
        self.admit = admit
        self.guard = guard
        self.host_readings = host_readings
        self.endpoints: dict[int, Endpoint] = {}
        self._socks: list[socket.socket] = []
        self._cfg: TestConfig | None = None
        self._shared: Counters | None = None
        self._watch: Watch | None = None

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self, cfg: TestConfig) -> tuple[list[tuple[str, int]], Greet | None]:
        """Open a server socket and fork a server endpoint per flow; per flow the address to connect to."""
        self._cfg = cfg
        # No latency histograms here: RR latency is timed at the client.
        self._shared = shared = Counters(cfg.flows * len(ROLES), 0)
        family = socket.AF_INET if cfg.ip_version == 4 else socket.AF_INET6
        for flow in range(cfg.flows):
            sock = server_socket(flow_def(cfg, flow), self.side, family, cfg)
            self._socks.append(sock)
            self.guard(sock)
        for flow, sock in enumerate(self._socks):
            index = endpoint_index(flow, "server")
            self.endpoints[index] = ep = endpoint.start(
                "server",
                self.side.netns_path,
                self.side.cpu,
                server_role(flow_def(cfg, flow), sock, cfg, shared, index, self.admit),
                keep_fds=(sock.fileno(),),
            )
            self.on_spawn(ep.pid)
        host = self.side.published or self.side.address
        targets = [(host, sock.getsockname()[1]) for sock in self._socks]
        self._close_sockets()  # the endpoints have their own copies
        return targets, None

    def start(self) -> list[Ready]:
        """Wait until every endpoint is ready (has its client), then release them all; per flow its Ready."""
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        ready = [Ready.from_message(ep.pid, ep.receive(deadline)) for ep in self._ordered()]
        self._watch = Watch(self._counters(), {i: ep.pid for i, ep in self.endpoints.items()})
        for ep in self.endpoints.values():
            ep.go()
        return ready

    def edge(self) -> None:
        """The window opens or closes now: note how often each endpoint migrated so far."""
        self._watching().edge()

    def mark(self) -> Callable[[], Reading]:
        """Read the counters now, the rest when asked: per flow its endpoint's counters and CPU seconds
        (and this host's clock and CPU times).

        The counters are read at once, right before the client side reads its own, so that work
        counted at either end covers the same instants."""
        now = time.monotonic()
        watch = self._watching()
        counters = self._counters().read()

        def reading() -> Reading:
            machine = cpu.snapshot() if self.host_readings else None
            return Reading(
                counters=[counters[i * len(SLOTS) : (i + 1) * len(SLOTS)] for i in sorted(self.endpoints)],
                proc_cpu_s=watch.proc_cpu(),
                t_s=now if self.host_readings else None,
                cpu=machine,
            )

        return reading

    def stop(self) -> list[Finished]:
        """End the endpoints as the test prescribes; per flow where it ran, its final counters, migrations."""
        cfg = self._cfg
        if cfg is None:
            raise LoadError("server endpoints", "stopped before they were opened")
        # Per flow as its own test says (--bidir mixes them): those SIGUSR1 stops first, then those at EOF.
        stops = ["server" in flow_def(cfg, flow).traits.stop for flow in range(cfg.flows)]
        for stop in (True, False):
            endpoint.finish([ep for ep, s in zip(self._ordered(), stops, strict=True) if s is stop], stop=stop)
        final = self._counters().read()
        watch = self._watch
        return [
            Finished(
                observed_cpus=dict(watch.observed[i]) if watch is not None else {},
                final_counters=tuple(final[i * len(SLOTS) : (i + 1) * len(SLOTS)]),
                migrations=watch.migrations(i) if watch is not None else NOT_READ,
            )
            for i in sorted(self.endpoints)
        ]

    def close(self) -> None:
        """Kill and reap every endpoint that still runs, and close the sockets."""
        self._close_sockets()
        for ep in self.endpoints.values():
            ep.close()

    def _ordered(self) -> list[Endpoint]:
        return [self.endpoints[i] for i in sorted(self.endpoints)]

    def _close_sockets(self) -> None:
        for sock in self._socks:
            sock.close()

    def _counters(self) -> Counters:
        if self._shared is None:
            raise LoadError("server endpoints", "used before they were opened")
        return self._shared

    def _watching(self) -> Watch:
        if self._watch is None:
            raise LoadError("server endpoints", "read before they started")
        return self._watch
