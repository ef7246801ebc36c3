"""The per-run ledger: what a run may have created, and who owns it.

One JSON file per run, ``/run/vdevperf/ledger/{rid}.json``, holds the owner
pid with its start time, the pids of the endpoint processes the load generator
started (each with its start time), and the namespaces of the run. Intent is
recorded first: a namespace is written to the ledger *before* it is created,
so a run killed with SIGKILL between the two steps is still covered.

Links are never created in the root namespace: every link is created inside a
topology namespace (stacked devices inside their parent's namespace), so
removing a run's namespaces removes all its links. Namespaces and endpoint
processes are therefore the only things a ledger has to list.

Start times are seconds since boot (psutil's create_time minus boot_time),
which a clock step does not move, so a pid reused by another process is told
apart from the process the ledger recorded.

Every write is atomic (temporary file, then rename); the first one links the
file into place and fails if it exists, which reserves the run id.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from vdevperf.topology import naming, netns

LEDGER_DIR = Path("/run/vdevperf/ledger")
LEDGER_VERSION = 1
# Start times come from clock ticks (1/100 s): equal within this, they are the same process.
_START_TOLERANCE_S = 0.005


def process_start_time(pid: int) -> float | None:
    """Seconds since boot at which process ``pid`` started, or None if there is no such process."""
    try:
        proc = psutil.Process(pid)
        return round(proc.create_time() - psutil.boot_time(), 2)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def same_process(pid: int, start_time: float) -> bool:
    """True if ``pid`` is alive and is the process that started at ``start_time``."""
    now = process_start_time(pid)
    return now is not None and abs(now - start_time) <= _START_TOLERANCE_S


@dataclass(frozen=True)
class PidRecord:
    """A process recorded in a ledger."""

    pid: int
    start_time: float


@dataclass(frozen=True)
class LedgerRecord:
    """The content of one ledger file."""

    run_id: str
    owner: PidRecord
    topology: str = ""
    namespaces: tuple[str, ...] = ()
    pids: tuple[PidRecord, ...] = ()

    def to_json(self) -> dict:
        """The JSON object written to the ledger file."""
        return {
            "version": LEDGER_VERSION,
            "run_id": self.run_id,
            "topology": self.topology,
            "owner": dataclasses.asdict(self.owner),
            "namespaces": list(self.namespaces),
            "pids": [dataclasses.asdict(p) for p in self.pids],
        }

    @classmethod
    def from_json(cls, data: dict) -> LedgerRecord:
        """Parse a ledger file's JSON object; raises ValueError, KeyError or TypeError if malformed."""
        if data.get("version") != LEDGER_VERSION:
            raise ValueError(f"ledger version {data.get('version')!r} is not {LEDGER_VERSION}")
        return cls(
            run_id=naming.check_run_id(data["run_id"]),
            owner=PidRecord(int(data["owner"]["pid"]), float(data["owner"]["start_time"])),
            topology=str(data.get("topology", "")),
            namespaces=tuple(str(n) for n in data["namespaces"]),
            pids=tuple(PidRecord(int(p["pid"]), float(p["start_time"])) for p in data["pids"]),
        )


def ledger_path(run_id: str, directory: Path = LEDGER_DIR) -> Path:
    """Where the ledger of run ``run_id`` lives."""
    return directory / f"{run_id}.json"


def list_ledgers(directory: Path = LEDGER_DIR) -> list[Path]:
    """Paths of all ledger files, sorted."""
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".json" and naming.RUN_ID_RE.match(p.stem))
    except FileNotFoundError:
        return []


def read_ledger(path: Path) -> LedgerRecord:
    """The record in ledger file ``path``; raises OSError or ValueError if unreadable."""
    try:
        return LedgerRecord.from_json(json.loads(path.read_text()))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: malformed ledger ({exc!r})") from exc


def run_ids_in_use(directory: Path = LEDGER_DIR) -> set[str]:
    """Run ids that have a ledger or a namespace of ours."""
    used = {p.stem for p in list_ledgers(directory)}
    for name in netns.list_ours():
        parsed = naming.parse_netns_name(name)
        if parsed:
            used.add(parsed[0])
    return used


class Ledger:
    """The open ledger of a live run; each change is written to disk before it returns."""

    def __init__(self, path: Path, record: LedgerRecord) -> None:
        self.path = path
        self._record = record
        self._lock = threading.Lock()

    @classmethod
    def create(cls, run_id: str | None = None, topology: str = "", directory: Path = LEDGER_DIR) -> Ledger:
        """Reserve a run id (a fresh one if None) by writing its ledger; FileExistsError if taken."""
        if run_id:
            naming.check_run_id(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        owner = PidRecord(os.getpid(), process_start_time(os.getpid()) or 0.0)
        while True:
            used = run_ids_in_use(directory)
            if run_id and run_id in used:
                raise FileExistsError(f"run id '{run_id}' is in use")
            rid = run_id or naming.new_run_id(used)
            ledger = cls(ledger_path(rid, directory), LedgerRecord(run_id=rid, owner=owner, topology=topology))
            try:
                ledger._write(exclusive=True)
            except FileExistsError:
                if run_id:
                    raise
                # Another process took the same id between our check and our link: draw again.
                continue
            return ledger

    @property
    def record(self) -> LedgerRecord:
        """The current content of the ledger."""
        return self._record

    @property
    def run_id(self) -> str:
        """The run id this ledger reserves."""
        return self._record.run_id

    def add_namespace(self, name: str) -> None:
        """Record namespace ``name``; call before creating it."""
        with self._lock:
            if name not in self._record.namespaces:
                self._update(namespaces=self._record.namespaces + (name,))

    def add_namespaces(self, names: Iterable[str]) -> None:
        """Record many namespaces with one write (not one per name); call before creating them."""
        with self._lock:
            known = set(self._record.namespaces)
            new = tuple(dict.fromkeys(n for n in names if n not in known))
            if new:
                self._update(namespaces=self._record.namespaces + new)

    def add_pids(self, *pids: int) -> None:
        """Record endpoint processes (with their start times) so cleanup can kill them if we die."""
        with self._lock:
            known = {p.pid for p in self._record.pids}
            new = []
            for pid in pids:
                start = process_start_time(pid)
                if pid not in known and start is not None:
                    new.append(PidRecord(pid, start))
                    known.add(pid)
            if new:
                self._update(pids=self._record.pids + tuple(new))

    def remove(self) -> None:
        """Delete the ledger file; the run is over and left nothing behind."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _update(self, **changes: object) -> None:
        old = self._record
        self._record = dataclasses.replace(old, **changes)
        try:
            self._write(exclusive=False)
        except BaseException:
            self._record = old
            raise

    def _write(self, exclusive: bool) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(self._record.to_json(), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            if exclusive:
                # link() fails if the target exists: the reservation is atomic.
                os.link(tmp, self.path)
            else:
                os.replace(tmp, self.path)
        finally:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
