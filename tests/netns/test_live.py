"""Live and latency output of real runs: --json-stream lines as intervals end, --percentiles in the table and file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from vdevperf.results import load_runs


def test_json_stream_prints_each_interval_before_the_run_ends(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["run", "veth", "-t", "TCP_STREAM,TCP_RR", "-P", "2", "-l", "2", "--warmup", "0.2", "--interval", "0.5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vdevperf", *args, "--json-stream", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[tuple[float, dict]] = []
    first_seen_running = None
    for line in proc.stdout:
        lines.append((time.monotonic(), json.loads(line)))  # every line is JSON on its own
        if first_seen_running is None:
            first_seen_running = proc.poll() is None
    proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert first_seen_running, "the first interval line arrived only after the process ended"
    *intervals, last = [record for _, record in lines]
    assert last["event"] == "end" and last["result"]["schema_version"] == 6
    assert last["result"] == json.loads(out.read_text())  # the whole result document, as stored
    for test, units in (("TCP_STREAM", "10^6bits/s"), ("TCP_RR", "Trans/s")):
        mine = [r for r in intervals if r["test"] == test]
        assert all(r["event"] == "interval" and r["units"] == units for r in mine)
        # A window measured again (steal or other processes' CPU over the limit) streams again from 0.
        windows: list[list[dict]] = []
        for r in mine:
            if r["start_s"] == 0:
                windows.append([])
            windows[-1].append(r)
        assert windows and all([r["end_s"] for r in w] == sorted(r["end_s"] for r in w) for w in windows)
        assert all(r["rate"] > 0 and len(r["flow_rates"]) == 2 for r in mine)
        assert all(abs(sum(r["flow_rates"]) - r["rate"]) <= 1e-6 * r["rate"] for r in mine)
        assert all(0 < r["cpu_util_pct"] <= 100 for r in mine)
        (run,) = [r for r in load_runs([out]) if str(r.config.test) == test]
        # The stored window is one of those streamed (after retries, the least noisy one is kept).
        assert [s["rate"] for s in run.iterations[0].series] in [[r["rate"] for r in w] for w in windows]
    # The intervals came over the run's time, not in one burst at the end.
    times = [t for t, _ in lines]
    assert times[-1] - times[0] > 1.5


def test_percentiles_reach_the_table_and_the_file(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "vdevperf", "run", "veth", "-t", "TCP_RR", "-l", "1", "--warmup", "0.2"]
        + ["--percentiles", "50,90,99,99.9,99.99", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.startswith("Topology"))
    headers = ("p50 us", "p90 us", "p99 us", "p99.9 us", "p99.99 us")
    places = [header.find(f" {h} ") if h != "p99.99 us" else header.find(f" {h}") for h in headers]
    assert all(p > 0 for p in places) and places == sorted(places), header  # in increasing order
    (run,) = load_runs([out])
    asked = run.metrics.latency_percentiles_us
    assert run.config.latency_percentiles == (50, 90, 99, 99.9, 99.99) and asked is not None
    assert asked["50"] == run.metrics.p50_latency_us and asked["99.9"] == run.metrics.p99_9_latency_us
    assert asked["50"] <= asked["90"] <= asked["99"] <= asked["99.9"] <= asked["99.99"] <= run.metrics.max_latency_us


def test_json_stream_refuses_what_it_cannot_stream_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vdevperf", "run", "--remote", "127.0.0.1:9", "--json-stream"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "vdevperf: --json-stream: goes with a plain run, not with --remote, --sweep or --offload-matrix"
    ]
