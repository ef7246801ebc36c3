"""Remove what dead runs left behind, as listed in their ledgers, and nothing else.

A run is dead when its owner pid is gone or now belongs to another process
(different start time). For a dead run, cleanup kills the endpoint processes
its ledger lists that are still the same processes (pid and start time) and
still live in one of the run's namespaces (the identity of /proc/PID/ns/net
is one the run recorded), then removes the namespaces it lists whose identity
is still the one the run recorded on creating them (which removes their
links) and the empty mount points of namespaces it never mounted, then
deletes the ledger. A name the run never recorded creating, or
that now stands for another namespace, and a process outside the run's
namespaces, are left alone and reported: a name or a pid is not proof of
ownership. The ledger of such a run stays until they are gone, so its run id
stays reserved and an older vdevperf (whose ledgers have no journal) can
still clean up after itself. Runs whose owner is alive are left alone.
Nothing is matched by name pattern: an object no ledger lists is never
touched.

``run``, ``compare`` and ``scale`` start with ``sweep``: the same pass, so
that leftovers of a killed run do not skew the next one's figures.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from vdevperf.errors import VdevperfError
from vdevperf.signals import held
from vdevperf.topology import ledger as ledger_mod
from vdevperf.topology import naming, netns
from vdevperf.topology.ledger import Identity
from vdevperf.topology.probe import has_privileges, require_privileges


@dataclass(frozen=True)
class CleanupReport:
    """What one cleanup pass did."""

    # Dead runs whose ledger was removed: everything they had made is gone.
    runs: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    killed_pids: tuple[int, ...] = ()
    live_runs: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    # Named by a dead run's ledger but not proven its own (identity unrecorded or changed,
    # or a process outside the run's namespaces): left alone, and the ledger with them.
    unproven_namespaces: tuple[str, ...] = ()
    spared_pids: tuple[int, ...] = ()
    kept_runs: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True if nothing was removed."""
        return not (self.runs or self.namespaces or self.killed_pids)

    def summary(self) -> str:
        """A few lines saying what was removed and what was left alone."""
        if self.empty:
            lines = ["nothing to clean up"]
        else:
            lines = [f"removed {len(self.runs)} dead run(s): {', '.join(self.runs)}"]
            if self.namespaces:
                lines.append(f"  namespaces: {', '.join(self.namespaces)}")
            if self.killed_pids:
                lines.append(f"  killed pids: {', '.join(map(str, self.killed_pids))}")
        if self.kept_runs:
            lines.append(
                f"left alone, not proven the dead runs' own: {self._unproven()}; the ledgers of "
                f"{', '.join(self.kept_runs)} stay until these are gone"
            )
        if self.live_runs:
            lines.append(f"left alone (owner alive): {', '.join(self.live_runs)}")
        if self.unreadable:
            lines.append(f"unreadable ledgers, left alone: {', '.join(self.unreadable)}")
        return "\n".join(lines)

    def line(self) -> str:
        """One line for the sweep that starts a run: what was removed, and what was not proven ours."""
        dead = [*self.runs, *self.kept_runs]
        text = (
            f"removed what {len(dead)} dead run(s) left ({', '.join(dead)}): "
            f"{len(self.namespaces)} namespace(s), {len(self.killed_pids)} process(es)"
        )
        if self.kept_runs:
            text += f"; left alone, not proven theirs: {self._unproven()}"
        return text

    def _unproven(self) -> str:
        parts = list(self.unproven_namespaces) + [f"pid {pid}" for pid in self.spared_pids]
        return ", ".join(parts)


_KILLED, _GONE, _SPARED = "killed", "gone", "spared"


def _kill(record: ledger_mod.PidRecord, homes: frozenset[Identity]) -> str:
    """SIGKILL a recorded endpoint if it is still that process and lives in one of ``homes``."""
    # A pidfd pins the process: once its start time and namespace match, the signal cannot
    # reach a newcomer that reused the pid in between.
    try:
        pidfd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return _GONE
    try:
        if not ledger_mod.same_process(record.pid, record.start_time):
            return _GONE
        home = ledger_mod.process_netns(record.pid)
        if home is None:
            return _GONE  # exiting or a zombie: its namespaces are released already
        if home not in homes:
            return _SPARED
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return _KILLED
    except ProcessLookupError:
        return _GONE
    finally:
        os.close(pidfd)


def _remove_stale_temporaries(directory: Path) -> None:
    # A writer killed between writing and renaming leaves ".{rid}.json.{pid}.{tid}.tmp".
    for tmp in directory.glob(".*.json.*.tmp"):
        pid = tmp.name.split(".")[3]
        if pid.isdigit() and ledger_mod.process_start_time(int(pid)) is None:
            tmp.unlink(missing_ok=True)
    # A journal whose ledger is gone (an older vdevperf's cleanup knew no journals).
    for journal in directory.glob(f"*{ledger_mod.JOURNAL_SUFFIX}"):
        if naming.RUN_ID_RE.match(journal.stem) and not journal.with_suffix(".json").exists():
            journal.unlink(missing_ok=True)


def remove_namespace(name: str, identity: Identity | None) -> bool:
    """Remove namespace ``name`` if it is still the one with ``identity``; False if gone, another, or unknown."""
    if identity is None or Identity.of(netns.path(name)) != identity:
        return False
    return netns.remove(name)


def remove_run(ledger: ledger_mod.Ledger) -> OSError | None:
    """Remove the namespaces a live run recorded creating (each while still the one it created),
    then the ledger if all went; the first failure, if any (the ledger then stays for ``cleanup``)."""
    failure = None
    for name, identity in ledger.record.created.items():
        try:
            remove_namespace(name, identity)
        except OSError as exc:
            failure = failure or exc
    if failure is None:
        ledger.remove()
    return failure


def tear_down(
    ledger: ledger_mod.Ledger, closers: Iterable[Callable[[], object]], error: Callable[[str], VdevperfError]
) -> None:
    """A live run's teardown, the one both a topology and a scale session use: call every closer
    (netlink sockets, fds), then remove_run, all with SIGINT and SIGTERM held so that a second
    signal cannot cut it short. Every step runs whatever failed before it (a leftover namespace
    is worse than a late error); afterwards the first failure is raised as ``error(why)``."""
    failure: BaseException | None = None
    with held():
        for close in closers:
            try:
                close()
            except BaseException as exc:
                failure = failure or exc
        removal = remove_run(ledger)
    failure = failure or removal
    if failure is not None:
        # The ledger goes only with the last namespace: whether it stays depends on removal alone.
        kept = "; the ledger is kept for 'vdevperf cleanup'" if removal is not None else ""
        raise error(f"teardown incomplete: {failure}{kept}") from failure


def owner_alive(record: ledger_mod.LedgerRecord) -> bool:
    """True if the process that owns this ledger is still running."""
    return ledger_mod.same_process(record.owner.pid, record.owner.start_time)


def other_live_runs(directory: Path = ledger_mod.LEDGER_DIR) -> list[str]:
    """Run ids of live vdevperf runs other than this process's own (their load would skew our CPU figures)."""
    found = []
    for path in ledger_mod.list_ledgers(directory):
        try:
            record = ledger_mod.read_ledger(path)
        except (OSError, ValueError):
            continue
        if record.owner.pid != os.getpid() and owner_alive(record):
            found.append(record.run_id)
    return sorted(found)


def cleanup(directory: Path = ledger_mod.LEDGER_DIR) -> CleanupReport:
    """Remove the processes and namespaces of every run whose owner is dead, where proven its own."""
    require_privileges("cleanup")
    runs, namespaces, killed, live, unreadable, unproven, spared, kept = [], [], [], [], [], [], [], []
    for path in ledger_mod.list_ledgers(directory):
        try:
            record = ledger_mod.read_ledger(path)
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            unreadable.append(str(path))
            continue
        if owner_alive(record):
            live.append(record.run_id)
            continue
        left = []
        for pid in record.pids:
            outcome = _kill(pid, record.identities)
            if outcome == _KILLED:
                killed.append(pid.pid)
            elif outcome == _SPARED:
                left.append(pid.pid)
        spared += left
        doubtful = []
        for name in dict.fromkeys([*record.namespaces, *record.created]):
            # A ledger only lists namespaces named after its own run; refuse anything else.
            parsed = naming.parse_netns_name(name)
            if not parsed or parsed[0] != record.run_id:
                continue
            if remove_namespace(name, record.identity(name)):
                namespaces.append(name)
            elif netns.unmounted(name):
                # The run was killed between making the mount point and mounting: no namespace there.
                netns.remove(name)
                namespaces.append(name)
            elif netns.exists(name):
                doubtful.append(name)
        unproven += doubtful
        if left or doubtful:
            kept.append(record.run_id)
        else:
            ledger_mod.remove_files(path)
            runs.append(record.run_id)
    _remove_stale_temporaries(directory)
    return CleanupReport(
        tuple(runs),
        tuple(namespaces),
        tuple(killed),
        tuple(live),
        tuple(unreadable),
        tuple(unproven),
        tuple(spared),
        tuple(kept),
    )


def sweep(directory: Path = ledger_mod.LEDGER_DIR) -> CleanupReport | None:
    """``cleanup`` as the start of a run does it: None without privileges (building will say so)."""
    if not has_privileges():
        return None
    return cleanup(directory)
