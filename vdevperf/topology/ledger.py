"""The per-run ledger: what a run may have created, and who owns it.

One JSON file per run, ``/run/vdevperf/ledger/{rid}.json``, holds the owner
pid with its start time and the namespaces of the run. Intent is recorded
first: a namespace is written to the ledger *before* it is created; a name
whose creation fails because it exists already (EEXIST) is someone else's
and is taken out again.

A name is not proof of ownership, so the run also keeps a journal beside the
ledger, ``{rid}.created``, one JSON line appended per fact: each namespace's
identity (the nsfs device and inode that ``os.stat`` of ``/run/netns/NAME``
gives), written once the namespace exists and before it is mounted under its
name (netns.create's ``before_mount``), so that even SIGKILL cannot leave a
namespace of ours under its name unrecorded; and each endpoint process the
load generator starts, with its start time. Appending keeps both O(1) for a
scale run's thousands of namespaces and -P 256's 512 endpoints, where
rewriting the ledger each time cost O(n^2). Cleanup removes a namespace only
while its identity is still the recorded one (and the empty mount point a
kill before the mount leaves, which is no namespace: netns.unmounted), and
kills an endpoint only while it lives in one of the run's recorded
namespaces (``/proc/PID/ns/net``).

Links are never created in the root namespace: every link is created inside a
topology namespace (stacked devices inside their parent's namespace), so
removing a run's namespaces removes all its links. Namespaces and endpoint
processes are therefore the only things a ledger has to list.

Start times are seconds since boot (psutil's create_time minus boot_time),
which a clock step does not move, so a pid reused by another process is told
apart from the process the ledger recorded.

Every write of the JSON file is atomic (temporary file, then rename); the
first one links the file into place and fails if it exists, which reserves the
run id. Journal lines go out in one write() in append mode; a line torn by a
kill is ignored when read, which errs on the side of removing less.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import psutil

from vdevperf.signals import held
from vdevperf.topology import naming, netns

LEDGER_DIR = Path("/run/vdevperf/ledger")
LEDGER_VERSION = 1
JOURNAL_SUFFIX = ".created"
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
class Identity:
    """What a namespace is, whatever its name: the device and inode of its nsfs file."""

    dev: int
    ino: int

    @classmethod
    def of(cls, path: str) -> Identity | None:
        """The identity of the file at ``path`` (following links), or None if there is none."""
        try:
            st = os.stat(path)
        except OSError:
            return None  # unknown counts as not ours: nothing is removed or killed on a guess
        return cls(st.st_dev, st.st_ino)


def process_netns(pid: int) -> Identity | None:
    """The identity of the network namespace process ``pid`` lives in, or None if it is gone."""
    return Identity.of(f"/proc/{pid}/ns/net")


@dataclass(frozen=True)
class LedgerRecord:
    """The content of one ledger file."""

    run_id: str
    owner: PidRecord
    topology: str = ""
    namespaces: tuple[str, ...] = ()
    pids: tuple[PidRecord, ...] = ()
    # From the journal: the namespaces this run created, with the identity each had then.
    created: Mapping[str, Identity] = field(default_factory=dict)

    def identity(self, name: str) -> Identity | None:
        """The recorded identity of namespace ``name``; None if the run never recorded creating it."""
        return self.created.get(name)

    @property
    def identities(self) -> frozenset[Identity]:
        """The identities of every namespace the run recorded creating."""
        return frozenset(self.created.values())

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


def journal_path(path: Path) -> Path:
    """The journal of created namespaces that belongs to ledger file ``path``."""
    return path.with_suffix(JOURNAL_SUFFIX)


def read_journal(path: Path) -> tuple[Mapping[str, Identity], tuple[PidRecord, ...]]:
    """What journal ``path`` records: name to identity of each namespace created, and the processes
    started; a torn or bad line is skipped."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return MappingProxyType({}), ()
    created, pids = {}, []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            if "pid" in entry:
                pids.append(PidRecord(int(entry["pid"]), float(entry["start_time"])))
            else:
                created[str(entry["name"])] = Identity(int(entry["dev"]), int(entry["ino"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return MappingProxyType(created), tuple(pids)


def list_ledgers(directory: Path = LEDGER_DIR) -> list[Path]:
    """Paths of all ledger files, sorted."""
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".json" and naming.RUN_ID_RE.match(p.stem))
    except FileNotFoundError:
        return []


def read_ledger(path: Path) -> LedgerRecord:
    """The record in ledger file ``path``; raises OSError or ValueError if unreadable."""
    try:
        record = LedgerRecord.from_json(json.loads(path.read_text()))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: malformed ledger ({exc!r})") from exc
    created, pids = read_journal(journal_path(path))
    return dataclasses.replace(record, created=created, pids=record.pids + pids)


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
        # What the journal holds, kept here too: each namespace created, each process started.
        self._created: dict[str, Identity] = {}
        self._pids: list[PidRecord] = []
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
        """The current content of the ledger (its journal included)."""
        return dataclasses.replace(
            self._record, created=MappingProxyType(self._created), pids=self._record.pids + tuple(self._pids)
        )

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

    def drop_namespace(self, name: str) -> None:
        """Take ``name`` out again: creating it failed because it exists, so it is not ours."""
        with self._lock:
            if name in self._record.namespaces:
                self._update(namespaces=tuple(n for n in self._record.namespaces if n != name))

    def identity(self, name: str) -> Identity | None:
        """The journalled identity of namespace ``name``, None if this run did not create it."""
        return self._created.get(name)

    def record_created(self, name: str, identity: Identity | None = None) -> Identity:
        """Journal ``identity`` as namespace ``name``'s (by default the identity it has now); call it
        right after creating the namespace, or from netns.create's ``before_mount``."""
        identity = identity or Identity.of(netns.path(name))
        if identity is None:
            raise FileNotFoundError(f"namespace {name} vanished right after its creation")
        with self._lock:
            self._append({"name": name, "dev": identity.dev, "ino": identity.ino})
            self._created[name] = identity
        return identity

    def add_pids(self, *pids: int) -> None:
        """Journal endpoint processes (with their start times) so cleanup can kill them if we die."""
        with self._lock:
            known = {p.pid for p in self._pids}
            new = []
            for pid in pids:
                start = process_start_time(pid)
                if pid not in known and start is not None:
                    new.append(PidRecord(pid, start))
                    known.add(pid)
            if new:
                self._append(*(dataclasses.asdict(p) for p in new))
                self._pids += new

    def _append(self, *entries: dict) -> None:
        # One write() in append mode: lines from this process never interleave or tear apart.
        text = "".join(json.dumps(entry) + "\n" for entry in entries)
        fd = os.open(journal_path(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Delete the ledger (journal first): the run is over and left nothing behind."""
        remove_files(self.path)

    def _update(self, **changes: Any) -> None:
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


def remove_files(path: Path) -> None:
    """Delete ledger file ``path`` and its journal; the journal goes first, so no journal outlives its ledger."""
    journal_path(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def journal_hook(ledger: Ledger, name: str) -> Callable[[os.stat_result], None]:
    """A ``before_mount`` for netns.create that journals the new namespace as ``name``."""

    def hook(st: os.stat_result) -> None:
        ledger.record_created(name, Identity(st.st_dev, st.st_ino))

    return hook


def create_namespace(ledger: Ledger, name: str) -> Identity:
    """Ledger ``name``, create it, journalling its identity before it is mounted; return that identity.

    A name that exists already (FileExistsError) is someone else's: it leaves the ledger again and
    the error propagates. If the identity cannot be journalled, nothing is mounted.
    """
    ledger.add_namespace(name)
    # No signal between creating and journalling; a SIGKILL leaves at most an unmounted mount point.
    with held():
        try:
            netns.create(name, before_mount=journal_hook(ledger, name))
        except FileExistsError:
            ledger.drop_namespace(name)
            raise
    identity = ledger.identity(name)
    assert identity is not None  # before_mount ran, or create raised
    return identity
