"""Reports from stored results: formats round-trip, diff verdicts and exit codes, plots (no root needed)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vdevperf.measure import cpu
from vdevperf.measure.paired import COSTLIER, NO_DIFFERENCE, SLOWER
from vdevperf.model import FlowMetrics, Iteration, Metrics, RunResult, RunStatus, TestConfig, TestName
from vdevperf.report import diff, formats
from vdevperf.report.rows import row
from vdevperf.results import ResultFile, load_runs

DATA = Path(__file__).parents[1] / "data"
CURRENT = DATA / "result-v3.json"


def vdevperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vdevperf", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_every_format_renders_every_stored_version(fmt):
    for path in sorted(DATA.glob("result-v*.json")):
        text = formats.render(load_runs([path]), fmt, "test")
        assert "veth" in text


def test_csv_parses_back_to_the_same_numbers():
    runs = load_runs([CURRENT])
    parsed = list(csv.DictReader(io.StringIO(formats.to_csv(runs))))
    assert len(parsed) == len(runs)
    for line, run in zip(parsed, runs, strict=True):
        expected = row(run)
        for field in ("rate", "cpu_util_pct", "softirq_pct", "service_demand", "p99_latency_us"):
            value = getattr(expected, field)
            assert (line[field] == "") if value is None else float(line[field]) == value


FORMULAS = ['=HYPERLINK("http://x","y")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tx", "\rx"]


@pytest.mark.parametrize("text", FORMULAS)
def test_csv_neutralises_a_text_cell_a_spreadsheet_would_run(text):
    runs = [dataclasses.replace(r, topology=text, topology_source=text) for r in load_runs([CURRENT])]
    parsed = list(csv.DictReader(io.StringIO(formats.to_csv(runs))))
    assert {line["topology"] for line in parsed} == {"'" + text}
    # Numbers stay numbers: the figures still parse back exactly.
    for line, run in zip(parsed, runs, strict=True):
        value = row(run).rate
        assert (line["rate"] == "") if value is None else float(line["rate"]) == value


def test_csv_cell_leaves_numbers_and_harmless_text_alone():
    from vdevperf.report.cells import cell

    for value in (-1.5, -3, 0.0, "-1.5", "+2", "-1e-3", "veth", "", "a=b", "TCP_RR", None):
        assert cell(value) == value
    assert cell("-inf") == "'-inf" and cell("-") == "'-" and cell("=1") == "'=1"


def test_json_rows_round_trip():
    runs = load_runs([CURRENT])
    assert json.loads(formats.to_json(runs)) == [dataclasses.asdict(row(r)) for r in runs]


def test_report_cli_accepts_a_directory_and_refuses_a_newer_file(tmp_path):
    proc = vdevperf("report", str(DATA), "--format", "markdown", "--group-by", "topology")
    assert proc.returncode == 0, proc.stderr
    assert "## topology: veth" in proc.stdout and "| veth" in proc.stdout
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema_version": 99, "runs": []}))
    proc = vdevperf("report", str(newer))
    assert proc.returncode == 2 and "newer than this vdevperf reads" in proc.stderr


def _metrics(rate: float, demand: float) -> Metrics:
    return Metrics(
        elapsed_s=1.0,
        throughput_mbps=rate,
        transactions_per_s=None,
        mean_latency_us=None,
        cpu_util_pct=50.0,
        softirq_pct=5.0,
        service_demand_us_per_kb=demand,
        service_demand_us_per_tr=None,
        flows=(FlowMetrics(0, rate),),
    )


_SAMPLE = {
    "t_s": 0.0,
    "cpu": [[0.0] * len(cpu.FIELDS)],
    "counters": [],
    "proc_cpu_s": None,
    "remote_cpu": None,
    "remote_t_s": None,
}


def _run(rates: list[float], demand: float) -> RunResult:
    iterations = tuple(
        Iteration(
            metrics=_metrics(r, demand * (1 + i / 1000)),
            endpoints=[],
            raw={
                "cpu_fields": list(cpu.FIELDS),
                "counter_names": [],
                "samples": [_SAMPLE] * 2,
                "histogram_sub_bits": 8,
                "latency_histograms": [],
                "sampler_cpu_s": None,
            },
            cpu_breakdown={"machine": {}, "per_cpu": []},
            series=[],
        )
        for i, r in enumerate(rates)
    )
    cfg = TestConfig(test=TestName.TCP_STREAM, iterations_max=len(rates), iterations_min=len(rates))
    return RunResult(
        topology="veth",
        topology_source="topologies/veth.toml",
        config=cfg,
        status=RunStatus.OK,
        metrics=_metrics(sum(rates) / len(rates), demand),
        iterations=iterations,
    )


def _write(path: Path, run: RunResult) -> Path:
    ResultFile(path=path, command=["test"]).add(run)
    return path


def test_diff_of_a_result_with_itself_is_not_significant_anywhere():
    runs = load_runs([CURRENT])
    rows = diff.diff(runs, runs)
    measured = [r for r in rows if r.changes]
    assert measured and all(c.verdict in (NO_DIFFERENCE, diff.UNTESTED_DIFF, "") for r in measured for c in r.changes)
    proc = vdevperf("diff", str(CURRENT), str(CURRENT), "--fail-on-regression", "1")
    assert proc.returncode == 0, proc.stderr


def test_a_20_percent_drop_with_tight_intervals_is_slower_and_fails_the_build(tmp_path):
    base = _write(tmp_path / "base.json", _run([1000.0, 1001.0, 999.0, 1000.5, 999.5], 0.5))
    new = _write(tmp_path / "new.json", _run([800.0, 801.0, 799.0, 800.5, 799.5], 0.6))
    rows = diff.diff(load_runs([base]), load_runs([new]))
    rate = rows[0].changes[0]
    assert rate.verdict == SLOWER and rate.change_pct == pytest.approx(-20.0) and rate.p_value < 1e-6
    demand = next(c for c in rows[0].changes if c.metric == "service_demand")
    assert demand.verdict == COSTLIER and demand.regression
    proc = vdevperf("diff", str(base), str(new), "--fail-on-regression", "10")
    assert proc.returncode == 1
    assert "slower" in proc.stdout and "regression: veth TCP_STREAM rate -20.0 %" in proc.stderr
    assert vdevperf("diff", str(base), str(new), "--fail-on-regression", "30").returncode == 0
    assert vdevperf("diff", str(new), str(base), "--fail-on-regression", "10").returncode == 0  # faster


def test_runs_of_either_engine_match_so_diff_shows_the_engines_effect():
    python = _run([1000.0, 1001.0, 999.0], 0.5)
    python = dataclasses.replace(python, config=dataclasses.replace(python.config, engine="python"))
    rows = diff.diff([python], [_run([1200.0, 1201.0, 1199.0], 0.4)])
    assert len(rows) == 1 and rows[0].changes[0].change_pct == pytest.approx(20.0)


def test_a_single_iteration_cannot_be_tested():
    rows = diff.diff([_run([1000.0], 0.5)], [_run([800.0], 0.6)])
    assert rows[0].changes[0].verdict == diff.UNTESTED_DIFF and not diff.regressions(rows, 10)


@pytest.mark.parametrize(
    "kind, suffix, magic",
    [("bars", ".png", b"\x89PNG\r\n\x1a\n"), ("timeseries", ".svg", b"<?xml"), ("bars", ".svg", b"<?xml")],
)
def test_plots_are_valid_files_of_real_size(tmp_path, kind, suffix, magic):
    out = tmp_path / f"plot{suffix}"
    proc = vdevperf("plot", str(CURRENT), "--kind", kind, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data.startswith(magic) and len(data) > 10_000
    if suffix == ".svg":
        assert b"</svg>" in data[-200:] and b"rate" in data


def test_a_plot_of_the_wrong_kind_of_data_says_so(tmp_path):
    proc = vdevperf("plot", str(CURRENT), "--kind", "offload", "-o", str(tmp_path / "x.png"))
    assert proc.returncode == 2 and "no offload-matrix runs" in proc.stderr
