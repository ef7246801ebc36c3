"""The result file format: the only place that reads or writes result JSON.

A result file holds the environment once and a list of runs. Each run keeps
its configuration, summary metrics, the confidence verdict and every
iteration with its own metrics and raw samples, so any figure can be
recomputed later. Files are written atomically (temporary file in the same
directory, fsync, os.replace) after every finished run.

Reading trusts nothing: a file is decoded as UTF-8 JSON, upgraded (a step that
fails on a document that only looked like its version is a ResultError), then
checked against the shipped schema (vdevperf/schema/result.schema.json, by
vdevperf.jsoncheck), so that every malformed file is refused in one line
naming it and the first bad place, before any report code sees it.

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
     Later, without a version change (an optional key older files lack): runs of a sweep
     (--sweep) gain sweep (parameter, value, label, the values and baseline, and for an
     MTU the MTU each device reported); other runs have no such key. RR runs asked for
     --percentiles gain config.latency_percentiles and metrics.latency_percentiles_us
     ({"99.99": µs}); others have neither key. Runs with --bidir gain config.bidir (true;
     config.flows counts both directions' flows, the second half running the reverse test)
     and metrics.forward_mbps and reverse_mbps; others have none of these keys. Runs of TCP
     tests with one connection per flow (TCP_STREAM, TCP_MAERTS, TCP_SENDFILE, TCP_RR) gain
     raw.tcp_info (per flow and role the TCP_INFO readings of the window; null for ends on
     another host) and metrics.retransmits; other runs have neither key. Paced runs gain
     config.rate_bps (-b), fq_rate_bps (--fq-rate) or rate_tps (--rate). RR runs with
     --burst N > 1 gain config.burst; UDP runs that measured jitter (RFC 3550) gain
     metrics.jitter_us and series[].jitter_us. Configs gain engine ("native" or "python": the
     loops that ran the load, --engine); a file without it ran the Python loops. Endpoints gain
     engine too, the loop each one ran (a loop with no native version runs in Python), except
     those of a vdevperf server.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import errno
import functools
import importlib.resources
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vdevperf import jsoncheck
from vdevperf.counters import counter_names
from vdevperf.errors import ResultError
from vdevperf.measure import cpu, histogram, tcpinfo
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
# Where a command stores its result file when no -o names one (relative to the working directory).
DEFAULT_RESULTS_DIR = Path("results")
# Optional keys: written only when a run asked for them or read them (--percentiles, --bidir, pacing,
# TCP_INFO, --burst, UDP jitter), so other files are unchanged. A config key is left out at its model
# default ("off").
OPTIONAL_METRIC_KEYS = ("latency_percentiles_us", "forward_mbps", "reverse_mbps", "retransmits", "jitter_us")
OPTIONAL_CONFIG_KEYS = ("latency_percentiles", "rate_bps", "fq_rate_bps", "rate_tps", "bidir", "burst")
METRIC_KEYS = tuple(f.name for f in dataclasses.fields(Metrics) if f.name not in OPTIONAL_METRIC_KEYS)
_OFF = {f.name: f.default for f in dataclasses.fields(TestConfig) if f.name in OPTIONAL_CONFIG_KEYS}
# A file written before --engine ran the Python loops: its config reads back as engine "python".
CONFIG_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(TestConfig) if f.name != "test" and f.name not in OPTIONAL_CONFIG_KEYS
} | {"engine": "python"}


def raw_to_json(raw: RawRun, flows: int) -> dict:
    """The raw measurements of one iteration, self-describing (field, counter and bucket layout); with
    ``tcp_info`` (decoded) only for tests that read it."""
    tcp_info = tcpinfo.to_json(raw.samples, flows)
    stored = {
        "cpu_fields": list(cpu.FIELDS),
        "counter_names": counter_names(flows),
        "samples": [
            {
                "t_s": s.t_s,
                "cpu": s.cpu,
                "counters": s.counters,
                "proc_cpu_s": s.proc_cpu_s,
                "remote_cpu": s.remote_cpu,
                "remote_t_s": s.remote_t_s,
            }
            for s in raw.samples
        ],
        "sampler_cpu_s": raw.sampler_cpu_s,
        "foreign": raw.foreign,
        "histogram_sub_bits": histogram.SUB_BITS,
        # JSON keys are strings: bucket index -> count, per flow.
        "latency_histograms": [{str(b): c for b, c in sorted(h.items())} for h in raw.histograms],
    }
    return stored if tcp_info is None else stored | {"tcp_info": tcp_info}


def samples_from_json(raw: dict) -> list[Sample]:
    """The samples of a stored iteration."""
    return [
        Sample(
            t_s=s["t_s"],
            cpu=s["cpu"],
            counters=s["counters"],
            proc_cpu_s=s.get("proc_cpu_s"),
            remote_cpu=s.get("remote_cpu"),
            remote_t_s=s.get("remote_t_s"),
        )
        for s in raw["samples"]
    ]


def histograms_from_json(raw: dict) -> list[dict[int, int]]:
    """The per-flow latency histograms of a stored iteration."""
    return [{int(b): c for b, c in h.items()} for h in raw.get("latency_histograms", [])]


def _metrics_to_json(metrics: Metrics | None) -> dict:
    if metrics is None:
        return dict.fromkeys(METRIC_KEYS) | {"flows": []}
    stored = dataclasses.asdict(metrics) | {"flows": [dataclasses.asdict(f) for f in metrics.flows]}
    return {k: v for k, v in stored.items() if k not in OPTIONAL_METRIC_KEYS or v is not None}


def _metrics_from_json(doc: dict) -> Metrics:
    return Metrics(**(doc | {"flows": tuple(FlowMetrics(**f) for f in doc["flows"])}))


def _config_to_json(config: TestConfig) -> dict:
    stored = dataclasses.asdict(config) | {
        "test": str(config.test),
        "latency_percentiles": list(config.latency_percentiles),
    }
    return {k: v for k, v in stored.items() if k not in OPTIONAL_CONFIG_KEYS or getattr(config, k) != _OFF[k]}


def _config_from_json(doc: dict) -> TestConfig:
    return TestConfig(
        **(
            doc
            | {
                "test": TestName(doc["test"]),
                "latency_percentiles": tuple(doc.get("latency_percentiles", ())),
                "engine": doc.get("engine", CONFIG_DEFAULTS["engine"]),
            }
        )
    )


def run_to_json(run: RunResult) -> dict:
    """One run as stored; metrics keys are always present, null where they do not apply; ``sweep``
    only in a sweep's runs."""
    confidence = None
    if run.confidence is not None:
        confidence = {
            "level_pct": run.confidence.level_pct,
            "width_pct": run.confidence.width_pct,
            "met": run.confidence.met,
            "intervals": [dataclasses.asdict(i) for i in run.confidence.intervals],
        }
    stored = {
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
        "iterations": [
            {
                "metrics": _metrics_to_json(it.metrics),
                "endpoints": it.endpoints,
                "raw": it.raw,
                "cpu_breakdown": it.cpu_breakdown,
                "series": it.series,
                "capture": it.capture,
                "round": it.round,
                "noise": it.noise,
                "retries": list(it.retries),
            }
            for it in run.iterations
        ],
    }
    return stored if run.sweep is None else stored | {"sweep": run.sweep}


def run_from_json(doc: dict) -> RunResult:
    """A stored run back as a RunResult."""
    status = RunStatus(doc["status"])
    confidence = None
    if doc["confidence"] is not None:
        c = doc["confidence"]
        confidence = Confidence(
            level_pct=c["level_pct"],
            width_pct=c["width_pct"],
            intervals=tuple(MetricInterval(**i) for i in c["intervals"]),
        )
    return RunResult(
        topology=doc["topology"],
        topology_source=doc["topology_source"],
        config=_config_from_json(doc["config"]),
        status=status,
        reason=doc["reason"],
        metrics=_metrics_from_json(doc["metrics"]) if status is RunStatus.OK else None,
        iterations=tuple(
            Iteration(
                metrics=_metrics_from_json(it["metrics"]),
                endpoints=it["endpoints"],
                raw=it["raw"],
                cpu_breakdown=it["cpu_breakdown"],
                series=it["series"],
                capture=it["capture"],
                round=it["round"],
                noise=it["noise"],
                retries=tuple(it["retries"]),
            )
            for it in doc["iterations"]
        ),
        confidence=confidence,
        offload=doc["offload"],
        remote=doc["remote"],
        sweep=doc.get("sweep"),
    )


def _upgrade_1_to_2(document: dict) -> dict:
    """Version 1 had one measurement per run; it becomes that run's single iteration."""
    document = copy.deepcopy(document)
    for run in document["runs"]:
        run["config"] = CONFIG_DEFAULTS | run["config"]
        metrics = dict.fromkeys(METRIC_KEYS) | run.pop("metrics")
        rate = metrics["throughput_mbps"] if metrics["throughput_mbps"] is not None else metrics["transactions_per_s"]
        if rate is not None:
            metrics |= {
                "flows": [{"flow": 0, "rate": rate}],
                "min_flow_rate": rate,
                "max_flow_rate": rate,
                "jain_index": 1.0,
            }
        else:
            metrics["flows"] = []
        endpoints, raw = run.pop("endpoints"), run.pop("raw")
        run["metrics"] = metrics
        run["unstable"] = False
        run["confidence"] = None
        run["iterations"] = []
        if run["status"] == "ok":
            raw = raw | {
                "counter_names": [f"flow0.{name}" for name in raw["counter_names"]],
                "histogram_sub_bits": histogram.SUB_BITS,
                "latency_histograms": [],
            }
            run["iterations"] = [
                {
                    "metrics": metrics,
                    "raw": raw,
                    "endpoints": [{"flow": 0, "role": role, **ep} for role, ep in endpoints.items()],
                }
            ]
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
_UPGRADES: dict[int, Callable[[dict], dict]] = {
    1: _upgrade_1_to_2,
    2: _upgrade_2_to_3,
    3: _upgrade_3_to_4,
    4: _upgrade_4_to_5,
    5: _upgrade_5_to_6,
}


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old one or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the user who reads them
        with os.fdopen(fd, "w", encoding="utf-8") as f:
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


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # mkdir's word for "a file has that name"
        raise NotADirectoryError(errno.ENOTDIR, f"{directory} is not a directory") from None


def create_exclusive(directory: Path, stem: str, text: str, suffix: str = ".json") -> Path:
    """A new file ``directory/stem.json`` (else ``stem-2.json``, ...; or another ``suffix``) holding ``text``.

    Created exclusively, so two runs started in the same second never share a
    file: the text goes to a temporary file first, which is then linked to the
    name; link(2) fails if the name exists, like O_EXCL, and no reader ever sees
    the file half written. Where the filesystem has no hard links, the name is
    opened with O_EXCL and written.
    """
    _make_dir(directory)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", dir=directory)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        n = 1
        path = directory / f"{stem}{suffix}"
        while not _create_as(path, tmp, text):
            n += 1
            path = directory / f"{stem}-{n}{suffix}"
        return path
    finally:
        os.unlink(tmp)


def _create_as(path: Path, tmp: str, text: str) -> bool:
    """Give ``path`` the content of ``tmp`` if no file has that name yet; False if one has."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP):  # no hard links here
            raise
    try:
        f = open(path, "x", encoding="utf-8")
    except FileExistsError:
        return False
    try:
        with f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink()
        raise
    return True


def new_result_path(directory: Path, text: str, prefix: str = "vdevperf") -> Path:
    """A result file of its own in ``directory``, named by the time (``prefix-YYYYmmdd-HHMMSS.json``) and
    holding ``text`` already; ResultError, before anything is measured, if it cannot be created."""
    stem = f"{prefix}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    try:
        return create_exclusive(directory, stem, text)
    except OSError as exc:
        raise ResultError(
            str(directory / f"{stem}.json"), f"cannot create the result file: {_why(exc)}; name one with -o FILE"
        ) from None


def check_writable(path: Path) -> None:
    """Refuse, before anything is measured, a result path that cannot be written: a directory, a device,
    or a place where no file can be created."""
    if path.is_dir():
        raise ResultError(str(path), "is a directory; name a file to write the results to")
    if path.exists() and not path.is_file():
        raise ResultError(str(path), "is not a regular file; results replace the file they are written to")
    try:
        _make_dir(path.parent)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ResultError(str(path), f"cannot write results there: {_why(exc)}") from None


def write_kept(path: Path, text: str, notice: Callable[[str], None]) -> Path | None:
    """Write ``text`` to ``path`` atomically; if that fails (disk full, I/O error, read-only), to a new file in
    the temporary directory, and say where in one ``notice``. The path written, or None if none could be."""
    try:
        write_text_atomic(path, text)
        return path
    except OSError as exc:
        why = _why(exc)
    tmp = Path(tempfile.gettempdir())
    try:
        fallback = create_exclusive(tmp, path.stem, text, path.suffix or ".json")
    except OSError as exc:
        notice(f"{path}: cannot write the results ({why}), nor in {tmp} ({_why(exc)}); they will be printed on stdout")
        return None
    notice(f"{path}: cannot write the results ({why}); they are in {fallback} instead")
    return fallback


def _ignore(line: str) -> None:
    pass


@dataclass
class ResultFile:
    """A result document being filled run by run; each ``add`` rewrites the file atomically.

    A write that fails moves the file to the temporary directory (``write_kept``), and if that
    fails too, ``unwritten`` is set and the caller prints the document: a full disk never costs
    the measurement.
    """

    path: Path | None
    command: list[str]
    environment: dict = field(default_factory=environment)
    created: str = field(default_factory=now_iso)
    runs: list[RunResult] = field(default_factory=list)
    # An interleaved comparison's plan, round orders and verdicts (see bench.compare).
    comparison: dict | None = None
    # Told in one line where the results went when ``path`` could not be written.
    notice: Callable[[str], None] = field(default=_ignore, repr=False, compare=False)
    # No file could be written: the document is only in memory.
    unwritten: bool = False
    # ``claim`` created the file (with no runs); ``release`` removes it if nothing was stored since.
    own_file: bool = field(default=False, repr=False, compare=False)
    saves: int = field(default=0, repr=False, compare=False)

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

    def text(self) -> str:
        """The document as written to the file."""
        return json.dumps(self.document(), indent=1) + "\n"

    def claim(self, output: Path | None, directory: Path) -> None:
        """Make sure the results can be stored before anything is measured: ``output`` must be writable;
        without it, a new file of this run's own is created in ``directory``. ResultError if not."""
        if output is not None:
            check_writable(output)
            self.path = output
        else:
            self.path = new_result_path(directory, self.text())
            self.own_file = True

    def release(self) -> None:
        """Remove the file ``claim`` created if no run was stored in it (the command failed first)."""
        if self.own_file and self.saves == 0 and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def add(self, run: RunResult) -> None:
        """Append a finished run and persist the file at once."""
        self.runs.append(run)
        self.save()

    def find(
        self, topology: str, config: TestConfig, offload: dict | None = None, sweep: dict | None = None
    ) -> RunResult | None:
        """The stored run of ``config`` on ``topology`` (with these offload settings, at this sweep value), if any."""
        for run in self.runs:
            if (
                run.topology == topology
                and run.config == config
                and _combination(run.offload) == _combination(offload)
                and _value(run.sweep) == _value(sweep)
            ):
                return run
        return None

    def put(self, run: RunResult) -> None:
        """Replace the stored run of the same topology, config, offload combination and sweep value, or
        append it; ``save`` persists it."""
        old = self.find(run.topology, run.config, run.offload, run.sweep)
        if old is None:
            self.runs.append(run)
        else:
            self.runs[self.runs.index(old)] = run

    def save(self) -> None:
        """Persist the file now (atomically), or where ``write_kept`` moved it."""
        if self.path is None:
            return
        self.path = write_kept(self.path, self.text(), self.notice)
        self.unwritten = self.path is None
        self.saves += 1


def _combination(offload: dict | None) -> dict | None:
    return None if offload is None else offload.get("combination")


def _value(sweep: dict | None) -> str | None:
    return None if sweep is None else sweep.get("label")


def resume(path: Path) -> ResultFile:
    """An existing result file to add the runs it lacks to; refused if measured on another machine."""
    document = load(path)
    here, there = environment(), document["environment"]
    for key in ("kernel", "cpu_model", "cpu_count"):
        if here.get(key) != there.get(key):
            raise ResultError(
                str(path),
                f"was measured with {key} {there.get(key)!r}, this machine has "
                f"{here.get(key)!r}; start a new file instead of resuming",
            )
    return ResultFile(
        path=path,
        command=document["command"],
        environment=there,
        created=document["created"],
        runs=runs_of(path, document),
        comparison=document["comparison"],
    )


def runs_of(path: Path, document: dict) -> list[RunResult]:
    """The runs of a loaded document; a run the model refuses (a config no run could have) names the file."""
    runs = []
    for n, doc in enumerate(document["runs"], start=1):
        try:
            runs.append(run_from_json(doc))
        except ValueError as exc:
            # The model refuses it, e.g. a value outside today's bounds from an older vdevperf.
            raise ResultError(str(path), f"run {n}: {exc}") from None
    return runs


def load_runs(paths: Sequence[Path], notice: Callable[[str], None] = lambda line: None) -> list[RunResult]:
    """Every run of the result files given; a directory means every ``*.json`` in it, where documents
    of another kind (scale, monitor, not vdevperf's) are skipped with a ``notice``."""
    runs: list[RunResult] = []
    loaded = 0
    for path, named in _expand(paths):
        try:
            document = load(path)
        except OtherDocument as exc:
            if named:
                raise
            notice(f"{path}: skipped: {exc.why}")
            continue
        runs += runs_of(path, document)
        loaded += 1
    if not loaded:
        raise ResultError(" ".join(map(str, paths)), "holds no run results")
    return runs


def read_json(path: Path) -> object:
    """The JSON document in ``path``; anything else (unreadable, not UTF-8, not JSON) is one ResultError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ResultError(str(path), exc.strerror or str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultError(str(path), f"not JSON: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ResultError(str(path), f"not JSON ({exc.msg}: line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ResultError(str(path), "not JSON: nested too deeply") from None
    except ValueError as exc:  # a number too long for int(), or NaN/Infinity
        raise ResultError(str(path), f"not JSON: {exc}") from None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _expand(paths: Sequence[Path]) -> list[tuple[Path, bool]]:
    """The files to read, each with whether it was named (True) or found in a directory (False)."""
    files: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            files += [(p, False) for p in sorted(path.glob("*.json")) if p.is_file()]
        else:
            files.append((path, True))
    if not files:
        raise ResultError(" ".join(map(str, paths)) or "results", "no result files found")
    return files


def documents_of_kind(paths: Sequence[Path], kind: str) -> list[dict]:
    """The JSON documents among ``paths`` (directories: their ``*.json``) whose ``kind`` is ``kind``."""
    found = [
        doc for doc in (read_json(p) for p, _ in _expand(paths)) if isinstance(doc, dict) and doc.get("kind") == kind
    ]
    if not found:
        raise ResultError(" ".join(map(str, paths)), f"holds no '{kind}' results")
    return found


class OtherDocument(ResultError):
    """A JSON document that is not a run result: another kind of vdevperf file, or not vdevperf's."""


@functools.cache
def schema() -> jsoncheck.Schema:
    """The shipped result schema, which every loaded document must match once upgraded."""
    text = (importlib.resources.files("vdevperf") / "schema" / "result.schema.json").read_text()
    return jsoncheck.Schema(json.loads(text))


# What an upgrade step can raise on a document that only looked like its version.
_MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError, ArithmeticError, RecursionError)


def load(path: Path) -> dict:
    """A stored result document, upgraded to the current format and checked against the schema."""
    document = read_json(path)
    if not isinstance(document, dict):
        raise OtherDocument(str(path), f"not a vdevperf result file (a JSON {_json_type(document)})")
    kind = document.get("kind", "run")
    if kind != "run":
        raise OtherDocument(str(path), f"holds {jsoncheck.short(kind)} results, not test runs")
    version = document.get("schema_version")
    if "schema_version" not in document:
        raise OtherDocument(str(path), "not a vdevperf result file (no schema_version)")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultError(str(path), f"schema_version {jsoncheck.short(version)} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise ResultError(
            str(path),
            f"schema_version {version} is newer than this vdevperf reads ({SCHEMA_VERSION}); upgrade vdevperf",
        )
    while version < SCHEMA_VERSION:
        try:
            document = _UPGRADES[version](document)
        except _MALFORMED as exc:
            raise ResultError(
                str(path), f"malformed schema_version {version} file: cannot upgrade it ({_malformed(exc)})"
            ) from None
        version += 1
        document["schema_version"] = version
    problem = schema().problem(document)
    if problem is not None:
        raise ResultError(str(path), f"not a valid result file: {problem}")
    return document


def _json_type(value: object) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _malformed(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing key {jsoncheck.short(exc.args[0]) if exc.args else ''}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = " ".join(str(exc).split())
    return text if len(text) <= 120 else text[:117] + "..."
