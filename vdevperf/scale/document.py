"""The scale result file: its own JSON document (``"kind": "scale"``), rewritten atomically after each phase.

Everything measured is kept: each method's marks (the creation time series),
the memory snapshots around each step, every settle poll after each
teardown, and every contention probe, next to the derived figures (rates,
KiB per namespace, percentiles), so any figure can be recomputed.

Format versions (``schema_version``), newest last; a newer file is refused:
  1  vdevperf 0.1.0: first format.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vdevperf import results
from vdevperf.errors import ResultError
from vdevperf.measure.env import environment
from vdevperf.scale.model import (
    Contention,
    CreationRun,
    MemoryCost,
    ScaleConfig,
    ScaleResult,
    SetnsPoint,
    Teardown,
)

KIND = "scale"
SCHEMA_VERSION = 1


def _teardown(down: Teardown | None) -> dict | None:
    if down is None:
        return None
    settle = dataclasses.asdict(down.settle)
    settle["settled"] = down.settle.settled
    settle["settled_s"] = down.settle.settled_s
    return {
        "namespaces": down.namespaces,
        "total_s": down.total_s,
        "per_namespace_ms": down.per_namespace_ms,
        "settle": settle,
    }


def _per_ns(pair: tuple[float, float] | None) -> dict | None:
    return None if pair is None else {"mem_available_kib": pair[0], "slab_kib": pair[1]}


def _creation(run: CreationRun) -> dict:
    return {
        "method": run.method.value,
        "links": run.links.value,
        "namespaces": run.namespaces,
        "total_s": run.total_s,
        "rate_per_s": run.rate_per_s,
        "memory_per_namespace": _per_ns(run.memory_kib),
        "marks": [dataclasses.asdict(m) for m in run.marks],
        "before": dataclasses.asdict(run.before),
        "after": dataclasses.asdict(run.after),
        "teardown": _teardown(run.teardown),
    }


def _memory(cost: MemoryCost | None) -> dict | None:
    if cost is None:
        return None
    return {
        "namespaces": cost.namespaces,
        "per_namespace": _per_ns(cost.netns_kib),
        "per_veth_pair": _per_ns(cost.veth_kib),
        "baseline": dataclasses.asdict(cost.baseline),
        "with_namespaces": dataclasses.asdict(cost.with_namespaces),
        "with_veth": None if cost.with_veth is None else dataclasses.asdict(cost.with_veth),
    }


def _setns(point: SetnsPoint) -> dict:
    return dataclasses.asdict(point)


def _contention(c: Contention | None) -> dict | None:
    if c is None:
        return None
    return {"namespaces": c.namespaces, "idle": dataclasses.asdict(c.idle), "during": dataclasses.asdict(c.during)}


def _config(config: ScaleConfig) -> dict:
    doc = dataclasses.asdict(config)
    doc["methods"] = [m.value for m in config.methods]
    doc["phases"] = [p.value for p in config.phases]
    doc["links"] = config.links.value
    return doc


def to_json(result: ScaleResult) -> dict:
    """The measured part of the document (config and phases)."""
    return {
        "run_id": result.run_id,
        "config": _config(result.config),
        "phases_done": list(result.phases_done),
        "methods": [_creation(run) for run in result.creation],
        "build": {"total_s": result.build_total_s, "teardown": _teardown(result.build_teardown)},
        "memory": _memory(result.memory),
        "setns": [_setns(p) for p in result.setns],
        "contention": _contention(result.contention),
    }


@dataclass
class ScaleFile:
    """The result file of one scale run; ``update`` rewrites it atomically with the result so far.

    Like results.ResultFile: ``claim`` makes sure it can be written before any namespace exists, and a
    failed write moves it to the temporary directory, or leaves it ``unwritten`` for the caller to print.
    """

    path: Path | None
    command: list[str]
    environment: dict = field(default_factory=environment)
    created: str = field(default_factory=results.now_iso)
    result: ScaleResult | None = None
    complete: bool = False
    notice: Callable[[str], None] = field(default=lambda line: None, repr=False, compare=False)
    unwritten: bool = False
    own_file: bool = field(default=False, repr=False, compare=False)
    saves: int = field(default=0, repr=False, compare=False)

    def document(self) -> dict:
        """The whole file as JSON data; ``complete`` is false until every phase has run."""
        doc = {
            "kind": KIND,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "command": self.command,
            "environment": self.environment,
            "complete": self.complete,
        }
        if self.result is not None:
            doc.update(to_json(self.result))
        return doc

    def text(self) -> str:
        """The document as written to the file."""
        return json.dumps(self.document(), indent=1) + "\n"

    def claim(self, output: Path | None, directory: Path) -> None:
        """``output`` must be writable; without it, a new file of this run's own is created in ``directory``."""
        if output is not None:
            results.check_writable(output)
            self.path = output
        else:
            self.path = results.new_result_path(directory, self.text(), prefix="vdevperf-scale")
            self.own_file = True

    def release(self) -> None:
        """Remove the file ``claim`` created if nothing was stored in it."""
        if self.own_file and self.saves == 0 and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def update(self, result: ScaleResult, complete: bool = False) -> None:
        """Keep ``result`` and persist the file at once (or where ``results.write_kept`` moves it)."""
        self.result = result
        self.complete = complete
        if self.path is not None:
            self.path = results.write_kept(self.path, self.text(), self.notice)
            self.unwritten = self.path is None
            self.saves += 1


def load(path: Path) -> dict:
    """A stored scale document; ResultError if unreadable, not a scale file, or from a newer vdevperf."""
    document = results.read_json(path)
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise ResultError(str(path), 'not a scale result (no "kind": "scale")')
    version = document.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ResultError(str(path), f"schema_version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise ResultError(
            str(path),
            f"schema_version {version} is newer than this vdevperf reads ({SCHEMA_VERSION}); upgrade vdevperf",
        )
    return document
