"""Remove what dead runs left behind, as listed in their ledgers, and nothing else.

A run is dead when its owner pid is gone or now belongs to another process
(different start time). For a dead run, cleanup kills the endpoint processes
its ledger lists that are still the same processes (pid and start time), then
removes the namespaces it lists that still exist (which removes their links),
then deletes the ledger. Runs whose owner is alive are left alone. Nothing is
matched by name pattern: an object no ledger lists is never touched.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from vdevperf.topology import ledger as ledger_mod
from vdevperf.topology import naming, netns
from vdevperf.topology.probe import require_privileges


@dataclass(frozen=True)
class CleanupReport:
    """What one cleanup pass did."""

    runs: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    killed_pids: tuple[int, ...] = ()
    live_runs: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()

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
        if self.live_runs:
            lines.append(f"left alone (owner alive): {', '.join(self.live_runs)}")
        if self.unreadable:
            lines.append(f"unreadable ledgers, left alone: {', '.join(self.unreadable)}")
        return "\n".join(lines)


def _kill(record: ledger_mod.PidRecord) -> bool:
    # A pidfd pins the process: once its start time matches, the signal cannot
    # reach a newcomer that reused the pid in between.
    try:
        pidfd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return False
    try:
        if not ledger_mod.same_process(record.pid, record.start_time):
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def _remove_stale_temporaries(directory: Path) -> None:
    # A writer killed between writing and renaming leaves ".{rid}.json.{pid}.{tid}.tmp".
    for tmp in directory.glob(".*.json.*.tmp"):
        pid = tmp.name.split(".")[3]
        if pid.isdigit() and ledger_mod.process_start_time(int(pid)) is None:
            tmp.unlink(missing_ok=True)


def remove_run(ledger: ledger_mod.Ledger, keep: frozenset[str] | set[str] = frozenset()) -> OSError | None:
    """Remove the namespaces a live run's ledger lists (but ``keep``, names that were not ours),
    then the ledger if all went; the first failure, if any (the ledger then stays for ``cleanup``)."""
    failure = None
    for name in ledger.record.namespaces:
        if name in keep:
            continue
        try:
            netns.remove(name)
        except OSError as exc:
            failure = failure or exc
    if failure is None:
        ledger.remove()
    return failure


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
    """Remove the processes and namespaces of every run whose owner is dead."""
    require_privileges("cleanup")
    runs, namespaces, killed, live, unreadable = [], [], [], [], []
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
        killed += [p.pid for p in record.pids if _kill(p)]
        for name in record.namespaces:
            # A ledger only lists namespaces named after its own run; refuse anything else.
            parsed = naming.parse_netns_name(name)
            if parsed and parsed[0] == record.run_id and netns.remove(name):
                namespaces.append(name)
        path.unlink(missing_ok=True)
        runs.append(record.run_id)
    _remove_stale_temporaries(directory)
    return CleanupReport(tuple(runs), tuple(namespaces), tuple(killed), tuple(live), tuple(unreadable))
