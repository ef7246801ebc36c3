"""What the sampler reads during a run, kept raw so every figure can be recomputed."""

from __future__ import annotations

from dataclasses import dataclass

from vdevperf.measure.cpu import CpuSnapshot


@dataclass(frozen=True)
class Sample:
    """One reading of per-CPU times and all shared counters, ``t_s`` after the window start."""

    t_s: float
    cpu: CpuSnapshot
    counters: list[int]


@dataclass(frozen=True)
class RawRun:
    """Everything measured in one run.

    ``samples``: the first and last bound the window; ``endpoints``: each
    endpoint's report (flow, role, placement, socket facts); ``histograms``:
    per flow, the latency histogram of the window (RR tests), sparse.
    """

    samples: list[Sample]
    endpoints: list[dict]
    histograms: list[dict[int, int]]
