"""Latency beyond the fixed percentiles: --percentiles, HdrHistogram export, the CDF plot."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from vdevperf.cli.argtypes import percentiles
from vdevperf.measure import histogram
from vdevperf.measure.metrics import summarize
from vdevperf.model import TestConfig, TestName
from vdevperf.report import latency
from vdevperf.report.table import run_table
from vdevperf.results import load_runs, run_from_json, run_to_json

DATA = Path(__file__).parents[1] / "data"
COMPARE = DATA / "result-v6-compare.json"  # two TCP_RR runs of three iterations, histograms stored
STREAM_ONLY = DATA / "result-v6-confidence.json"  # a TCP_STREAM run: no latency
# Our bucket is at most 1/2**HALF_BITS of its value wide; Hdr's 3 digits are finer.
RESOLUTION = 1 / 2**histogram.HALF_BITS


def vdevperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vdevperf", *args], capture_output=True, text=True, timeout=120)


def _spread(n: int = 100_000, seed: int = 7) -> dict[int, int]:
    """A long-tailed latency histogram (lognormal around 30 µs, with 20 ms outliers), all buckets filled densely."""
    rng = random.Random(seed)
    values = [int(rng.lognormvariate(10.3, 0.6)) for _ in range(n)] + [20_000_000 + i for i in range(20)]
    return histogram.sparse(_dense(values))


def _dense(values: list[int]) -> list[int]:
    counts = [0] * histogram.BUCKETS
    for v in values:
        counts[histogram.index(v)] += 1
    return counts


def test_asked_percentiles_agree_with_the_fixed_ones_and_increase():
    hist = _spread()
    fixed = histogram.summary_us(hist)
    asked = histogram.percentiles_us(hist, (50, 90, 99, 99.9, 99.99, 100))
    assert asked is not None
    assert [asked["50"], asked["90"], asked["99"], asked["99.9"]] == [
        fixed["p50"],
        fixed["p90"],
        fixed["p99"],
        fixed["p99_9"],
    ]
    assert fixed["p99_9"] < asked["99.99"] <= asked["100"] <= fixed["max"]
    assert asked["100"] > 19_000  # the outliers are the top 0.02 %
    assert histogram.percentiles_us({}, (50,)) is None


def test_percentiles_flag_parses_and_refuses_in_one_line():
    assert percentiles("99.99, 50,90,50") == (50.0, 90.0, 99.99)
    for bad in ("0", "100.5", "abc", "50,,99", "-1", "nan"):
        proc = vdevperf("run", "veth", "-t", "TCP_RR", "--percentiles", bad)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "--percentiles" in lines[0], (bad, proc.stderr)
    with pytest.raises(ValueError, match="--percentiles"):
        TestConfig(test=TestName.TCP_RR, latency_percentiles=(0.0,))


def test_percentiles_are_stored_optionally_and_shown_only_when_asked(tmp_path):
    (run, *_) = load_runs([COMPARE])
    hists = [histogram.merge(it.raw["latency_histograms"]) for it in run.iterations]
    asked = (50.0, 99.9, 99.99)
    metrics = summarize(run.config.test, [it.metrics for it in run.iterations], hists, asked)
    assert metrics.latency_percentiles_us is not None
    assert metrics.latency_percentiles_us["50"] == metrics.p50_latency_us
    assert metrics.latency_percentiles_us["99.9"] == metrics.p99_9_latency_us
    cfg = dataclasses.replace(run.config, latency_percentiles=asked)
    with_asked = dataclasses.replace(run, config=cfg, metrics=metrics)
    stored = run_to_json(with_asked)
    assert stored["config"]["latency_percentiles"] == [50.0, 99.9, 99.99]
    assert set(stored["metrics"]["latency_percentiles_us"]) == {"50", "99.9", "99.99"}
    # Not asked: neither key, so files stay as they were.
    plain = run_to_json(run)
    assert "latency_percentiles" not in plain["config"] and "latency_percentiles_us" not in plain["metrics"]
    # Written, checked against the schema and read back.
    path = tmp_path / "r.json"
    doc = json.loads(COMPARE.read_text())
    doc["runs"] = [stored]
    doc["comparison"] = None
    path.write_text(json.dumps(doc))
    (back,) = load_runs([path])
    assert back.config.latency_percentiles == asked
    assert back.metrics == metrics == run_from_json(stored).metrics
    table = run_table([back])
    assert "p99.9 us" in table and "p99.99 us" in table and "p50 us" in table
    assert table.count("p50 us") == 1  # the asked 50 has its fixed column already
    assert "p99.9 us" not in run_table([run])


def test_hdr_export_decodes_to_our_figures_within_our_bucket_resolution():
    hist = _spread()
    fixed = histogram.summary_us(hist)
    decoded = HdrHistogram.decode(latency.to_hdr(hist).encode())
    assert decoded.get_total_count() == sum(hist.values())
    assert decoded.get_min_value() / 1e3 == pytest.approx(fixed["min"], rel=RESOLUTION)
    assert decoded.get_max_value() / 1e3 == pytest.approx(fixed["max"], rel=RESOLUTION)
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9)):
        assert decoded.get_value_at_percentile(q) / 1e3 == pytest.approx(fixed[key], rel=RESOLUTION), key
    ours = histogram.percentiles_us(hist, (99.99,))
    assert ours is not None
    assert decoded.get_value_at_percentile(99.99) / 1e3 == pytest.approx(ours["99.99"], rel=RESOLUTION)


def test_export_hdr_writes_readable_logs_of_every_rr_run(tmp_path):
    proc = vdevperf("export-hdr", str(COMPARE), "-o", str(tmp_path / "hdr"))
    assert proc.returncode == 0, proc.stderr
    runs = load_runs([COMPARE])
    logs = sorted((tmp_path / "hdr").glob("*.hlog"))
    assert [p.name for p in logs] == ["00-loopback-TCP_RR.hlog", "01-veth-TCP_RR.hlog"]
    for run, log in zip(runs, logs, strict=True):
        reader = HistogramLogReader(str(log), HdrHistogram(1, latency.HDR_HIGHEST_NS, latency.HDR_DIGITS))
        hdr = reader.get_next_interval_histogram()
        assert reader.get_next_interval_histogram() is None
        assert hdr.get_total_count() == sum(latency.run_histogram(run).values())
        assert hdr.get_value_at_percentile(99) / 1e3 == pytest.approx(run.metrics.p99_latency_us, rel=RESOLUTION)
        hgrm = log.with_suffix(".hgrm").read_text()
        assert "Value     Percentile TotalCount" in hgrm and f"TotalCount     = {hdr.get_total_count():12.3f}]" in hgrm
    stream_only = vdevperf("export-hdr", str(STREAM_ONLY), "-o", str(tmp_path / "none"))
    assert stream_only.returncode == 2 and "no measured RR run" in stream_only.stderr


def test_cdf_plot_is_a_png_with_a_line_per_rr_run(tmp_path):
    out = tmp_path / "cdf.png"
    proc = vdevperf("plot", str(COMPARE), "--kind", "cdf", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    values, fractions = latency.cdf_us(latency.run_histogram(load_runs([COMPARE])[0]))
    assert values == sorted(values) and fractions == sorted(fractions) and fractions[-1] == 1.0
    none = vdevperf("plot", str(STREAM_ONLY), "--kind", "cdf", "-o", str(tmp_path / "x.png"))
    assert none.returncode == 2 and "no measured RR run" in none.stderr
