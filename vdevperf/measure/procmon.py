"""Per-process CPU occupancy over time: the layout of seed 003, for any processes.

A label groups processes: every process whose name matches a pattern, one
PID, or a command vdevperf started together with its descendants. A pattern
matches the way users type names: as a prefix (``ksoftirqd`` matches the
kernel threads ``ksoftirqd/0``, ``ksoftirqd/1``; ``python`` matches
``python3``), or, when it holds ``*``, ``?`` or ``[``, as a shell glob over
the whole name (``kworker/*:1*``). The name is the process name (comm, 15
characters at most) or the file name of its program. Each sample reads
the exact on-CPU time of every process in the group from
/proc/PID/schedstat (nanoseconds, not the 10 ms ticks of /proc/PID/stat)
and reports, per label, the CPU time used since the previous sample as %
of one CPU (so 250 % is two and a half CPUs busy).

Processes come and go: a process is known by (pid, start time), a new one
counts from when it started, one that exited between two samples loses only
that last partial interval, and a label with no process at all is blank.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import psutil


@dataclass(frozen=True)
class Target:
    """What one label watches: processes whose name matches ``name`` (a prefix or a glob, see
    ``name_matches``), the process ``pid``, or the tree of the command vdevperf started as ``tree_root``."""

    label: str
    name: str | None = None
    pid: int | None = None
    tree_root: int | None = None

    def processes(self) -> list[psutil.Process]:
        """The processes this label stands for right now (an exited, unreaped one is gone)."""
        try:
            if self.pid is not None:
                found = [psutil.Process(self.pid)]
            elif self.tree_root is not None:
                root = psutil.Process(self.tree_root)
                found = [root, *root.children(recursive=True)]
            else:
                found = [p for p in psutil.process_iter(["name", "cmdline"]) if _named(p, self.name)]
        except psutil.Error:
            return []
        return [p for p in found if _alive(p)]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


_GLOB_CHARS = frozenset("*?[")


def name_matches(pattern: str, name: str) -> bool:
    """True if ``name`` starts with ``pattern``, or matches it as a shell glob when it holds * ? or [."""
    if _GLOB_CHARS & set(pattern):
        return fnmatch.fnmatchcase(name, pattern)
    return name.startswith(pattern)


def _named(proc: psutil.Process, pattern: str | None) -> bool:
    """True if ``pattern`` matches the process name (comm) or the file name of its program."""
    if pattern is None:
        return False
    cmdline = proc.info["cmdline"] or []
    names = [proc.info["name"] or "", os.path.basename(cmdline[0]) if cmdline else ""]
    return any(name and name_matches(pattern, name) for name in names)


def _on_cpu_s(pid: int) -> float | None:
    """Seconds process ``pid`` has run on a CPU (all its threads), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Row:
    """One interval: when it ended (wall clock), how long it was, occupancy % per label (None: no process)."""

    timestamp: float
    dt_s: float
    occupancy_pct: tuple[float | None, ...]


@dataclass
class Monitor:
    """Samples the targets' CPU time; each ``sample()`` returns the Row of the interval it closes."""

    targets: Sequence[Target]
    _seen: list[dict[tuple[int, float], float]] = field(default_factory=list)
    _last: float = 0.0
    busy_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def __post_init__(self) -> None:
        self._last = time.monotonic()
        self._seen = [self._read(t) for t in self.targets]
        self.busy_s = [0.0] * len(self.targets)

    @staticmethod
    def _read(target: Target) -> dict[tuple[int, float], float]:
        times = {}
        for proc in target.processes():
            try:
                key = (proc.pid, proc.create_time())
            except psutil.Error:
                continue
            seconds = _on_cpu_s(proc.pid)
            if seconds is not None:
                times[key] = seconds
        return times

    def sample(self) -> Row:
        """Close the current interval and return its occupancy per label."""
        now = time.monotonic()
        dt = now - self._last
        start_wall = time.time() - dt
        occupancy: list[float | None] = []
        for i, target in enumerate(self.targets):
            current = self._read(target)
            if not current:
                occupancy.append(None)
            else:
                used = 0.0
                for key, seconds in current.items():
                    before = self._seen[i].get(key)
                    if before is None:
                        # New since the last sample: all its time is from this interval if it
                        # started within it; otherwise it only now matched, and counts from here.
                        before = 0.0 if key[1] >= start_wall else seconds
                    used += max(seconds - before, 0.0)
                self.busy_s[i] += used
                occupancy.append(100.0 * used / dt if dt > 0 else 0.0)
            self._seen[i] = current
        self._last = now
        self.elapsed_s += dt
        return Row(timestamp=time.time(), dt_s=dt, occupancy_pct=tuple(occupancy))

    def total(self) -> Row:
        """The whole run as one row: mean occupancy per label over all intervals."""
        occ = tuple(100.0 * b / self.elapsed_s if self.elapsed_s > 0 else None for b in self.busy_s)
        return Row(timestamp=time.time(), dt_s=self.elapsed_s, occupancy_pct=occ)


def watch(
    monitor: Monitor, interval_s: float, until: float | None = None, running: Callable[[], bool] = lambda: True
) -> Iterator[Row]:
    """Rows every ``interval_s`` until the monotonic time ``until`` or ``running()`` turns false."""
    next_tick = time.monotonic() + interval_s
    while True:
        stop_at = next_tick if until is None else min(next_tick, until)
        while time.monotonic() < stop_at and running():
            time.sleep(min(0.05, max(stop_at - time.monotonic(), 0)))
        yield monitor.sample()
        if not running() or (until is not None and time.monotonic() >= until):
            return
        next_tick += interval_s
