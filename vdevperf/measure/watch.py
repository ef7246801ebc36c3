"""The sampler of a measured window: CPU times, shared counters, and where each endpoint runs.

A Watch reads, at one instant, the per-CPU times, every endpoint's counters
(from the shared memory the loops write) and each endpoint process's CPU
time and current CPU; the client side's Watch also asks the server half for
its reading at the same instant and merges it into the sample. Sampling
happens outside the endpoint processes, so it costs them nothing; what it
costs this process is measured (``own_cpu_s``). Given ``tcp_info``, it also
reads each flow's TCP_INFO right after the counters. Migrations are read
only at the window's edges (``edge``), outside it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import psutil

from vdevperf.counters import ROLES, SLOTS, endpoint_index
from vdevperf.errors import LoadError
from vdevperf.measure import cpu, noise
from vdevperf.measure.cpu import CpuSnapshot
from vdevperf.measure.endpoints import NOT_READ, NotRead
from vdevperf.measure.sample import Sample


@dataclass(frozen=True)
class Reading:
    """The server half's state at one instant: per flow its endpoint's counters (SLOTS) and CPU
    seconds; from another host also that host's clock (``t_s``) and per-CPU times."""

    counters: list[list[int]]
    proc_cpu_s: list[float]
    t_s: float | None = None
    cpu: CpuSnapshot | None = None


# Ask the server half for a reading now; the returned function waits for it.
Mark = Callable[[], Callable[[], Reading]]
# Per endpoint, TCP_INFO of its connection as the kernel returned it (None: not read).
ReadTcpInfo = Callable[[], list[bytes | None]]


class SharedCounters(Protocol):
    """The memory the endpoints' loops write their counters and latency histograms into."""

    endpoints: int

    def read(self) -> list[int]:
        """Every slot of every endpoint, endpoint after endpoint."""

    def read_hist(self, index: int) -> list[int]:
        """Endpoint ``index``'s latency histogram."""


class Watch:
    """Samples CPU, counters and where each endpoint of this host runs (and the server half, if asked)."""

    def __init__(
        self,
        shared: SharedCounters,
        pids: dict[int, int],
        server: Mark | None = None,
        tcp_info: ReadTcpInfo | None = None,
    ) -> None:
        self.shared = shared
        self.tcp_info = tcp_info
        self.indexes = sorted(pids)
        self.procs = [psutil.Process(pids[i]) for i in self.indexes]
        self.server = server
        self.own_cpu_s: list[float] = []
        self.observed: dict[int, Counter[int]] = {i: Counter() for i in self.indexes}
        self.start = 0.0
        self.remote_start = 0.0
        self.samples: list[Sample] = []
        self.histograms: list[list[list[int]]] = []
        self._edges: list[list[int | None]] = []

    def proc_cpu(self) -> list[float]:
        """Per endpoint the CPU seconds its process used so far (user + system); counts where each runs."""
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

    def edge(self) -> None:
        """At an edge of the window, just outside it: how often each endpoint has migrated so far."""
        self._edges.append([noise.migrations(proc.pid) for proc in self.procs])

    def migrations(self, index: int) -> int | None | NotRead:
        """How often endpoint ``index`` migrated between the first and the last edge."""
        if len(self._edges) < 2:
            return NOT_READ
        at = self.indexes.index(index)
        before, after = self._edges[0][at], self._edges[-1][at]
        return None if before is None or after is None else after - before

    def take(self, histograms: bool = False) -> None:
        """One sample; at the window edges also the latency histograms, read right after the counters."""
        now = time.monotonic()
        if not self.samples:
            self.start = now
        # The server half reads its side while this one reads here: the request goes out first.
        pending = self.server() if self.server is not None else None
        counters = self.shared.read()
        tcp_info = self.tcp_info() if self.tcp_info is not None else None
        if histograms:
            self.histograms.append(
                [
                    self.shared.read_hist(endpoint_index(flow, "client"))
                    for flow in range(self.shared.endpoints // len(ROLES))
                ]
            )
        machine = cpu.snapshot()
        local_cpu = self.proc_cpu()
        proc_cpu = [0.0] * self.shared.endpoints
        for index, seconds in zip(self.indexes, local_cpu, strict=True):
            proc_cpu[index] = seconds
        remote_cpu = remote_t_s = None
        if pending is not None:
            reading = pending()
            for flow, values in enumerate(reading.counters):
                at = endpoint_index(flow, "server") * len(SLOTS)
                counters[at : at + len(SLOTS)] = values
                proc_cpu[endpoint_index(flow, "server")] = reading.proc_cpu_s[flow]
            if reading.t_s is not None:
                # Another host: its per-CPU times, by its own clock since the window start.
                if not self.samples:
                    self.remote_start = reading.t_s
                remote_cpu, remote_t_s = reading.cpu, reading.t_s - self.remote_start
        self.samples.append(
            Sample(
                t_s=now - self.start,
                cpu=machine,
                counters=counters,
                proc_cpu_s=proc_cpu,
                remote_cpu=remote_cpu,
                remote_t_s=remote_t_s,
                tcp_info=tcp_info,
            )
        )
        # This process does nothing but sample during the window: its CPU time is the cost of
        # measuring (process_time is exact; /proc's 10 ms ticks would hide it).
        self.own_cpu_s.append(time.process_time())
