"""The result file format: the only place that reads or writes result JSON.

A result file holds the environment once and a list of runs. Each run keeps
its configuration, derived metrics and the raw samples behind them, so any
figure can be recomputed later. Files are written atomically (temporary file
in the same directory, fsync, os.replace), after every finished run.

Format versions (``schema_version``), newest last; a file from a newer
vdevperf is refused, older ones are upgraded step by step by ``_UPGRADES``:
  1  vdevperf 0.1.0: first format.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vdevperf.errors import ResultError
from vdevperf.measure import cpu
from vdevperf.measure.env import environment
from vdevperf.measure.metrics import counter_names
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import Metrics, RunResult, RunStatus, TestConfig, TestName

SCHEMA_VERSION = 1
METRIC_KEYS = tuple(f.name for f in dataclasses.fields(Metrics))

# Upgrades from version N to N+1, applied in order to older files.
_UPGRADES: dict[int, Callable[[dict], dict]] = {}


def raw_to_json(raw: RawRun) -> dict:
    """The raw samples of a run, self-describing (field and counter names)."""
    return {
        "cpu_fields": list(cpu.FIELDS),
        "counter_names": counter_names(),
        "samples": [{"t_s": s.t_s, "cpu": s.cpu, "counters": s.counters} for s in raw.samples],
    }


def samples_from_json(raw: dict) -> list[Sample]:
    """The samples of a stored run."""
    return [Sample(t_s=s["t_s"], cpu=s["cpu"], counters=s["counters"]) for s in raw["samples"]]


def _config_to_json(config: TestConfig) -> dict:
    return {k: (str(v) if isinstance(v, TestName) else v) for k, v in dataclasses.asdict(config).items()}


def run_to_json(run: RunResult) -> dict:
    """One run as stored; metrics keys are always present, null where they do not apply."""
    metrics = dataclasses.asdict(run.metrics) if run.metrics else dict.fromkeys(METRIC_KEYS)
    return {
        "topology": run.topology,
        "topology_source": run.topology_source,
        "test": str(run.config.test),
        "status": str(run.status),
        "reason": run.reason,
        "config": _config_to_json(run.config),
        "metrics": metrics,
        "endpoints": run.endpoints,
        "raw": run.raw,
    }


def run_from_json(doc: dict) -> RunResult:
    """A stored run back as a RunResult."""
    config = dict(doc["config"], test=TestName(doc["config"]["test"]))
    status = RunStatus(doc["status"])
    return RunResult(
        topology=doc["topology"],
        topology_source=doc["topology_source"],
        config=TestConfig(**config),
        status=status,
        reason=doc["reason"],
        metrics=Metrics(**doc["metrics"]) if status is RunStatus.OK else None,
        endpoints=doc["endpoints"],
        raw=doc["raw"],
    )


def write_atomic(path: Path, document: dict) -> None:
    """Write JSON so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the user who reads them
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@dataclass
class ResultFile:
    """A result document being filled run by run; each ``add`` rewrites the file atomically."""

    path: Path | None
    command: list[str]
    environment: dict = field(default_factory=environment)
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    runs: list[RunResult] = field(default_factory=list)

    def document(self) -> dict:
        """The whole file as JSON data."""
        return {
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "command": self.command,
            "environment": self.environment,
            "runs": [run_to_json(run) for run in self.runs],
        }

    def add(self, run: RunResult) -> None:
        """Append a finished run and persist the file at once."""
        self.runs.append(run)
        if self.path is not None:
            write_atomic(self.path, self.document())


def default_path(directory: Path, created: datetime.datetime | None = None) -> Path:
    """A fresh file name in ``directory`` that sorts by time."""
    stamp = (created or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = directory / f"vdevperf-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"vdevperf-{stamp}-{n}.json"
    return path


def load(path: Path) -> dict:
    """A stored result document, upgraded to the current format."""
    try:
        with open(path) as f:
            document = json.load(f)
    except OSError as exc:
        raise ResultError(str(path), exc.strerror or str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ResultError(str(path), f"not JSON ({exc.msg} at line {exc.lineno})") from None
    version = document.get("schema_version") if isinstance(document, dict) else None
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
