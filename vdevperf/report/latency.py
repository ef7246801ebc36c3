"""Latency distributions of stored RR runs: the merged histogram, its CDF, HdrHistogram export.

Everything is read from the per-flow histograms each iteration keeps in its raw
data (measure/histogram.py's bucket layout), so any result file with RR runs can
be exported or drawn again later.

HdrHistogram export (the optional ``vdevperf[hdr]`` dependency, the ``hdrhistogram``
package): values are recorded in nanoseconds, the unit HdrHistogram's log tools
assume (HistogramLogProcessor's default output ratio of 1e6 then prints ms), each
bucket's count at the bucket's midpoint, the value our own percentiles report.
The Hdr histogram keeps 3 significant digits (0.1 %), finer than our buckets
(exact below 256 ns, at most 1/128 = 0.8 % of the value wide above), so the
export loses nothing we measured: its percentiles equal ours to within Hdr's
0.1 %, and its min/max are within one of our buckets of ours (we report a
bucket's outer bounds there, Hdr the recorded midpoint).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vdevperf.errors import VdevperfError
from vdevperf.measure import histogram
from vdevperf.model import RunResult, RunStatus
from vdevperf.traits import TRAITS

# Hdr's trackable range in ns: 1 ns to one hour, with 3 significant digits.
HDR_LOWEST_NS = 1
HDR_HIGHEST_NS = 3600 * 10**9
HDR_DIGITS = 3


def run_histogram(run: RunResult) -> dict[int, int]:
    """The histogram of all flows of all iterations of ``run`` merged (empty for a stream test)."""
    for it in run.iterations:
        if it.raw.get("histogram_sub_bits", histogram.SUB_BITS) != histogram.SUB_BITS:
            raise VdevperfError("latency", f"{run.topology} {run.config.test}: histogram of another bucket layout")
    return histogram.merge(h for it in run.iterations for h in it.raw.get("latency_histograms", []))


def latency_runs(runs: Sequence[RunResult]) -> list[tuple[RunResult, dict[int, int]]]:
    """The measured RR runs with a non-empty histogram, each with it."""
    found = []
    for run in runs:
        if run.status is RunStatus.OK and TRAITS[run.config.test].latency:
            hist = run_histogram(run)
            if hist:
                found.append((run, hist))
    return found


def cdf_us(hist: dict[int, int]) -> tuple[list[float], list[float]]:
    """The CDF as steps: each non-empty bucket's upper bound in µs and the fraction at or below it."""
    items = sorted(hist.items())
    total = sum(c for _, c in items)
    values, fractions, seen = [], [], 0
    for bucket, count in items:
        seen += count
        values.append(histogram.bounds(bucket)[1] / 1e3)
        fractions.append(seen / total)
    return values, fractions


def _hdrh() -> tuple[Any, Any]:
    """hdrhistogram's histogram and log modules, imported only when exporting."""
    try:
        from hdrh import histogram as hdr
        from hdrh import log
    except ImportError:
        raise VdevperfError("export-hdr", "needs hdrhistogram: pip install 'vdevperf[hdr]'") from None
    return hdr, log


def to_hdr(hist: dict[int, int]) -> Any:
    """An hdrh HdrHistogram (ns) holding every count of ``hist`` at its bucket's midpoint."""
    out = _hdrh()[0].HdrHistogram(HDR_LOWEST_NS, HDR_HIGHEST_NS, HDR_DIGITS)
    for bucket, count in sorted(hist.items()):
        value = min(max(round(histogram.midpoint_ns(bucket)), HDR_LOWEST_NS), HDR_HIGHEST_NS)
        out.record_value(value, count)
    return out


def _file_stem(n: int, run: RunResult) -> str:
    label = f"{n:02d}-{run.topology}-{run.config.test}"
    if run.sweep is not None:
        label += f"-{run.sweep['label']}"
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)


def write_hdr(runs: Sequence[RunResult], out_dir: Path) -> list[Path]:
    """Per measured RR run, ``NN-topology-TEST.hlog`` (HdrHistogram log: one interval, the
    whole measured time) and ``.hgrm`` (percentile distribution in µs, as wrk2 prints and
    HdrHistogram's online plotter reads); the files written."""
    found = latency_runs(runs)
    if not found:
        raise VdevperfError("export-hdr", "no measured RR run with a latency histogram in these results")
    hdr_log = _hdrh()[1]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for n, (run, hist) in enumerate(found):
        hdr = to_hdr(hist)
        stem = out_dir / _file_stem(n, run)
        elapsed = sum(it.metrics.elapsed_s for it in run.iterations)
        with open(stem.with_suffix(".hlog"), "w") as f:
            writer = hdr_log.HistogramLogWriter(f)
            writer.output_comment(f"vdevperf {run.topology} {run.config.test}: latency in ns, all flows merged")
            writer.output_log_format_version()
            writer.output_legend()
            writer.output_interval_histogram(hdr, 0, elapsed)
        with open(stem.with_suffix(".hgrm"), "wb") as f:  # hdrh writes bytes here
            hdr.output_percentile_distribution(f, 1000.0)  # ns recorded, µs printed
        written += [stem.with_suffix(".hlog"), stem.with_suffix(".hgrm")]
    return written
