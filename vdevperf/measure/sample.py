"""What the sampler reads during a run, kept raw so every figure can be recomputed."""

from __future__ import annotations

from dataclasses import dataclass

from vdevperf.measure.cpu import CpuSnapshot
from vdevperf.measure.endpoints import EndpointReport


@dataclass(frozen=True)
class Sample:
    """One reading, ``t_s`` after the window start: per-CPU times, all shared counters and,
    per endpoint (in endpoint order), the CPU seconds its process has used (user + system).

    With the server half on another host, its counters and CPU seconds come from there, read
    at the same instant, with that host's per-CPU times (``remote_cpu``) and ``remote_t_s``,
    the time since the window start by that host's clock.

    ``tcp_info``: per endpoint, what getsockopt(TCP_INFO) returned for its connection (measure.tcpinfo
    decodes it), None for one not read; None altogether for tests that read none.
    """

    t_s: float
    cpu: CpuSnapshot
    counters: list[int]
    proc_cpu_s: list[float] | None = None
    remote_cpu: CpuSnapshot | None = None
    remote_t_s: float | None = None
    tcp_info: list[bytes | None] | None = None


@dataclass(frozen=True)
class RawRun:
    """Everything measured in one run.

    ``samples``: the first and last bound the window; ``endpoints``: each
    endpoint's report (flow, role, placement, socket facts); ``histograms``:
    per flow, the latency histogram of the window (RR tests), sparse;
    ``sampler_cpu_s``: what the measuring itself cost.
    """

    samples: list[Sample]
    endpoints: list[EndpointReport]
    histograms: list[dict[int, int]]
    # CPU seconds the sampling process itself used between the first and the last sample.
    sampler_cpu_s: float | None = None
    # The frame-size probe's summary (measure.capture), when one ran.
    capture: dict | None = None
    # CPU used during the window by processes outside the test (measure.noise.foreign_cpu).
    foreign: dict | None = None
