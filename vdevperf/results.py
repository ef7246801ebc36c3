"""The result file format: the only place that reads or writes result JSON.

A result file holds the environment once and a list of runs. Each run keeps
its configuration, summary metrics, the confidence verdict and every
iteration with its own metrics and raw samples, so any figure can be
recomputed later. Files are written atomically (temporary file in the same
directory, fsync, os.replace) after every finished run.

Format versions (``schema_version``), newest last; a file from a newer
vdevperf is refused, older ones are upgraded step by step by ``_UPGRADES``:
  1  vdevperf 0.1.0: first format; one measurement per run (metrics, endpoints, raw).
  2  vdevperf 0.2.0: iterations (each with metrics, endpoints as a list with flow and
     role, raw with per-flow counter names and latency histograms), confidence,
     unstable flag; metrics gain latency percentiles, UDP counts and per-flow rates;
     config gains flows, socket buffers, iterations and confidence.
  3  vdevperf 0.3.0: samples gain proc_cpu_s (per endpoint process), raw gains
     sampler_cpu_s; iterations gain cpu_breakdown (per field, machine and per CPU)
     and series (per sampling interval); metrics gain the client/server/elsewhere
     CPU split and sampler_cpu_pct. CPU shares are now of the elapsed time x CPUs
     (see measure/cpu.py); figures stored by older versions keep netperf's ratio
     to the sum of the /proc/stat fields.
  4  vdevperf 0.4.0: runs gain offload (requested, changed, state per device, and the
     combination of a matrix), iterations gain capture (the frame-size probe).
  5  vdevperf 0.5.0: remote endpoints. Runs gain remote (the vdevperf server's address and
     facts, null for local runs); samples gain remote_cpu and remote_t_s (the server
     host's per-CPU times and clock); metrics gain remote_cpu_util_pct, remote_softirq_pct
     and remote_service_demand_us_per_kb/_per_tr.
  6  vdevperf 0.6.0: interleaved comparisons. Busy CPU time now leaves out host steal
     (see measure/cpu.py), so cpu_util_pct and service demand are the guest's own; metrics
     gain steal_pct. Older files keep figures that counted steal as busy. Iterations gain
     round (of an interleaved comparison), noise (steal, CPU of other processes, other
     live runs, migrations, flags) and retries (attempts rejected for steal); endpoint
     placements gain migrations; raw gains foreign. The document gains comparison (the
     plan, each round's order and seed, and per cell the per-round ratios, their interval
     and verdict), null outside compare and the offload matrix.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vdevperf.errors import ResultError
from vdevperf.load.context import counter_names
from vdevperf.measure import cpu, histogram
from vdevperf.measure.env import environment
from vdevperf.measure.metrics import series
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import (
    Confidence,
    FlowMetrics,
    Iteration,
    MetricInterval,
    Metrics,
    RunResult,
    RunStatus,
    TestConfig,
    TestName,
)

SCHEMA_VERSION = 6
METRIC_KEYS = tuple(f.name for f in dataclasses.fields(Metrics))
CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TestConfig) if f.name != "test"}


def raw_to_json(raw: RawRun, flows: int) -> dict:
    """The raw measurements of one iteration, self-describing (field, counter and bucket layout)."""
    return {
        "cpu_fields": list(cpu.FIELDS),
        "counter_names": counter_names(flows),
        "samples": [{"t_s": s.t_s, "cpu": s.cpu, "counters": s.counters, "proc_cpu_s": s.proc_cpu_s,
                     "remote_cpu": s.remote_cpu, "remote_t_s": s.remote_t_s}
                    for s in raw.samples],
        "sampler_cpu_s": raw.sampler_cpu_s,
        "foreign": raw.foreign,
        "histogram_sub_bits": histogram.SUB_BITS,
        # JSON keys are strings: bucket index -> count, per flow.
        "latency_histograms": [{str(b): c for b, c in sorted(h.items())} for h in raw.histograms],
    }


def samples_from_json(raw: dict) -> list[Sample]:
    """The samples of a stored iteration."""
    return [Sample(t_s=s["t_s"], cpu=s["cpu"], counters=s["counters"], proc_cpu_s=s.get("proc_cpu_s"),
                   remote_cpu=s.get("remote_cpu"), remote_t_s=s.get("remote_t_s"))
            for s in raw["samples"]]


def histograms_from_json(raw: dict) -> list[dict[int, int]]:
    """The per-flow latency histograms of a stored iteration."""
    return [{int(b): c for b, c in h.items()} for h in raw.get("latency_histograms", [])]


def _metrics_to_json(metrics: Metrics | None) -> dict:
    if metrics is None:
        return dict.fromkeys(METRIC_KEYS) | {"flows": []}
    return dataclasses.asdict(metrics) | {"flows": [dataclasses.asdict(f) for f in metrics.flows]}


def _metrics_from_json(doc: dict) -> Metrics:
    return Metrics(**(doc | {"flows": tuple(FlowMetrics(**f) for f in doc["flows"])}))


def _config_to_json(config: TestConfig) -> dict:
    return dataclasses.asdict(config) | {"test": str(config.test)}


def run_to_json(run: RunResult) -> dict:
    """One run as stored; metrics keys are always present, null where they do not apply."""
    confidence = None
    if run.confidence is not None:
        confidence = {
            "level_pct": run.confidence.level_pct,
            "width_pct": run.confidence.width_pct,
            "met": run.confidence.met,
            "intervals": [dataclasses.asdict(i) for i in run.confidence.intervals],
        }
    return {
        "topology": run.topology,
        "topology_source": run.topology_source,
        "test": str(run.config.test),
        "status": str(run.status),
        "reason": run.reason,
        "config": _config_to_json(run.config),
        "metrics": _metrics_to_json(run.metrics),
        "unstable": run.unstable,
        "confidence": confidence,
        "offload": run.offload,
        "remote": run.remote,
        "iterations": [{"metrics": _metrics_to_json(it.metrics), "endpoints": it.endpoints, "raw": it.raw,
                        "cpu_breakdown": it.cpu_breakdown, "series": it.series, "capture": it.capture,
                        "round": it.round, "noise": it.noise, "retries": list(it.retries)}
                       for it in run.iterations],
    }


def run_from_json(doc: dict) -> RunResult:
    """A stored run back as a RunResult."""
    status = RunStatus(doc["status"])
    confidence = None
    if doc["confidence"] is not None:
        c = doc["confidence"]
        confidence = Confidence(level_pct=c["level_pct"], width_pct=c["width_pct"],
                                intervals=tuple(MetricInterval(**i) for i in c["intervals"]))
    return RunResult(
        topology=doc["topology"],
        topology_source=doc["topology_source"],
        config=TestConfig(**(doc["config"] | {"test": TestName(doc["config"]["test"])})),
        status=status,
        reason=doc["reason"],
        metrics=_metrics_from_json(doc["metrics"]) if status is RunStatus.OK else None,
        iterations=tuple(Iteration(metrics=_metrics_from_json(it["metrics"]), endpoints=it["endpoints"],
                                   raw=it["raw"], cpu_breakdown=it["cpu_breakdown"], series=it["series"],
                                   capture=it["capture"], round=it["round"], noise=it["noise"],
                                   retries=tuple(it["retries"]))
                         for it in doc["iterations"]),
        confidence=confidence,
        offload=doc["offload"],
        remote=doc["remote"],
    )


def _upgrade_1_to_2(document: dict) -> dict:
    """Version 1 had one measurement per run; it becomes that run's single iteration."""
    document = copy.deepcopy(document)
    for run in document["runs"]:
        run["config"] = CONFIG_DEFAULTS | run["config"]
        metrics = dict.fromkeys(METRIC_KEYS) | run.pop("metrics")
        rate = metrics["throughput_mbps"] if metrics["throughput_mbps"] is not None else metrics["transactions_per_s"]
        if rate is not None:
            metrics |= {"flows": [{"flow": 0, "rate": rate}], "min_flow_rate": rate, "max_flow_rate": rate,
                        "jain_index": 1.0}
        else:
            metrics["flows"] = []
        endpoints, raw = run.pop("endpoints"), run.pop("raw")
        run["metrics"] = metrics
        run["unstable"] = False
        run["confidence"] = None
        run["iterations"] = []
        if run["status"] == "ok":
            raw = raw | {"counter_names": [f"flow0.{name}" for name in raw["counter_names"]],
                         "histogram_sub_bits": histogram.SUB_BITS, "latency_histograms": []}
            run["iterations"] = [{"metrics": metrics, "raw": raw,
                                  "endpoints": [{"flow": 0, "role": role, **ep} for role, ep in endpoints.items()]}]
    return document


def _upgrade_2_to_3(document: dict) -> dict:
    """Version 2 had no per-process CPU: derive what the raw samples allow, leave the rest null."""
    document = copy.deepcopy(document)
    for run in document["runs"]:
        run["metrics"] = dict.fromkeys(METRIC_KEYS) | run["metrics"]
        for it in run["iterations"]:
            it["metrics"] = dict.fromkeys(METRIC_KEYS) | it["metrics"]
            raw = it["raw"]
            raw["sampler_cpu_s"] = None
            for sample in raw["samples"]:
                sample["proc_cpu_s"] = None
            samples = samples_from_json(raw)
            it["cpu_breakdown"] = cpu.breakdown(samples[0].cpu, samples[-1].cpu, samples[-1].t_s - samples[0].t_s)
            it["series"] = series(TestName(run["test"]), run["config"]["flows"], samples, raw["counter_names"])
    return document


def _upgrade_3_to_4(document: dict) -> dict:
    """Version 3 had no offload control and no frame-size probe."""
    document = copy.deepcopy(document)
    for run in document["runs"]:
        run["offload"] = None
        for it in run["iterations"]:
            it["capture"] = None
    return document


def _upgrade_4_to_5(document: dict) -> dict:
    """Version 4 had no remote endpoints: every run was local."""
    document = copy.deepcopy(document)
    for run in document["runs"]:
        run["remote"] = None
        run["metrics"] = dict.fromkeys(METRIC_KEYS) | run["metrics"]
        for it in run["iterations"]:
            it["metrics"] = dict.fromkeys(METRIC_KEYS) | it["metrics"]
            for sample in it["raw"]["samples"]:
                sample["remote_cpu"] = None
                sample["remote_t_s"] = None
    return document


def _upgrade_5_to_6(document: dict) -> dict:
    """Version 5 had no rounds, no noise record and no steal figure; its CPU figures keep counting
    steal as busy (the raw samples still allow recomputing them)."""
    document = copy.deepcopy(document)
    document["comparison"] = None
    for run in document["runs"]:
        run["metrics"] = dict.fromkeys(METRIC_KEYS) | run["metrics"]
        for it in run["iterations"]:
            it["metrics"] = dict.fromkeys(METRIC_KEYS) | it["metrics"]
            it |= {"round": None, "noise": None, "retries": []}
            it["raw"]["foreign"] = None
    return document


# Upgrades from version N to N+1, applied in order to older files.
_UPGRADES: dict[int, Callable[[dict], dict]] = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3, 3: _upgrade_3_to_4,
                                                4: _upgrade_4_to_5, 5: _upgrade_5_to_6}


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old one or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the user who reads them
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_atomic(path: Path, document: dict) -> None:
    """Write a JSON document atomically."""
    write_text_atomic(path, json.dumps(document, indent=1) + "\n")


def now_iso() -> str:
    """The current UTC time as result files record it."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass
class ResultFile:
    """A result document being filled run by run; each ``add`` rewrites the file atomically."""

    path: Path | None
    command: list[str]
    environment: dict = field(default_factory=environment)
    created: str = field(default_factory=now_iso)
    runs: list[RunResult] = field(default_factory=list)
    # An interleaved comparison's plan, round orders and verdicts (see bench.compare).
    comparison: dict | None = None

    def document(self) -> dict:
        """The whole file as JSON data."""
        return {
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "command": self.command,
            "environment": self.environment,
            "runs": [run_to_json(run) for run in self.runs],
            "comparison": self.comparison,
        }

    def add(self, run: RunResult) -> None:
        """Append a finished run and persist the file at once."""
        self.runs.append(run)
        self.save()

    def find(self, topology: str, config: TestConfig, offload: dict | None = None) -> RunResult | None:
        """The stored run of ``config`` on ``topology`` (with these offload settings), if any."""
        for run in self.runs:
            if run.topology == topology and run.config == config and _combination(run.offload) == \
                    _combination(offload):
                return run
        return None

    def put(self, run: RunResult) -> None:
        """Replace the stored run of the same topology, config and offload combination, or append it;
        ``save`` persists it."""
        old = self.find(run.topology, run.config, run.offload)
        if old is None:
            self.runs.append(run)
        else:
            self.runs[self.runs.index(old)] = run

    def save(self) -> None:
        """Persist the file now (atomically)."""
        if self.path is not None:
            write_atomic(self.path, self.document())


def _combination(offload: dict | None) -> dict | None:
    return None if offload is None else offload.get("combination")


def resume(path: Path) -> ResultFile:
    """An existing result file to add the runs it lacks to; refused if measured on another machine."""
    document = load(path)
    here, there = environment(), document["environment"]
    for key in ("kernel", "cpu_model", "cpu_count"):
        if here.get(key) != there.get(key):
            raise ResultError(str(path), f"was measured with {key} {there.get(key)!r}, this machine has "
                                         f"{here.get(key)!r}; start a new file instead of resuming")
    return ResultFile(path=path, command=document["command"], environment=there, created=document["created"],
                      runs=[run_from_json(r) for r in document["runs"]], comparison=document["comparison"])


def load_runs(paths: Sequence[Path]) -> list[RunResult]:
    """Every run of the result files given, directories meaning every ``*.json`` in them."""
    runs = []
    for path in _expand(paths):
        for number, doc in enumerate(load(path)["runs"], start=1):
            try:
                runs.append(run_from_json(doc))
            except ValueError as exc:
                # The model refuses it, e.g. a value outside today's bounds from an older vdevperf.
                raise ResultError(str(path), f"run {number}: {exc}") from None
    return runs


def default_path(directory: Path, created: datetime.datetime | None = None, prefix: str = "vdevperf") -> Path:
    """A fresh file name in ``directory`` that sorts by time."""
    stamp = (created or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = directory / f"{prefix}-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{prefix}-{stamp}-{n}.json"
    return path


def _read_json(path: Path) -> object:
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as exc:
        raise ResultError(str(path), exc.strerror or str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ResultError(str(path), f"not JSON ({exc.msg} at line {exc.lineno})") from None


def _expand(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ResultError(" ".join(map(str, paths)) or "results", "no result files found")
    return files


def documents_of_kind(paths: Sequence[Path], kind: str) -> list[dict]:
    """The JSON documents among ``paths`` (directories: their ``*.json``) whose ``kind`` is ``kind``."""
    found = [doc for doc in map(_read_json, _expand(paths)) if isinstance(doc, dict) and doc.get("kind") == kind]
    if not found:
        raise ResultError(" ".join(map(str, paths)), f"holds no '{kind}' results")
    return found


def load(path: Path) -> dict:
    """A stored result document, upgraded to the current format."""
    document = _read_json(path)
    version = document.get("schema_version") if isinstance(document, dict) else None
    kind = document.get("kind", "run") if isinstance(document, dict) else "run"
    if kind != "run":
        raise ResultError(str(path), f"holds '{kind}' results, not test runs")
    if not isinstance(version, int) or version < 1:
        raise ResultError(str(path), "not a vdevperf result file (no schema_version)")
    if version > SCHEMA_VERSION:
        raise ResultError(str(path), f"schema_version {version} is newer than this vdevperf reads "
                                     f"({SCHEMA_VERSION}); upgrade vdevperf")
    while version < SCHEMA_VERSION:
        document = _UPGRADES[version](document)
        version += 1
        document["schema_version"] = version
    return document
