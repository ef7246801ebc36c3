"""What else ran during a measured window: CPU used by processes outside the test, and migrations.

vdevperf's CPU figures are machine-wide (they must be: softirq work lands on
any CPU), so any other process that burns CPU during a window inflates them.
This module reads, at the window's edges only, the CPU time of every
user-space process from /proc/PID/stat (10 ms ticks, plenty for a
threshold), and reports how much of the machine the ones outside the test
used: not vdevperf and its descendants (the endpoints), not kernel threads
(ksoftirqd and kworkers do the test's own network work). A process that
exits inside the window leaves no stat behind, but its parent's reaped
children's time (cutime, cstime) grows by what it used, so it counts too. An endpoint's CPU
migrations come from /proc/PID/sched (se.nr_migrations).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Flags an iteration can carry (Iteration.noise["flags"]), and what each means, for footnotes.
FLAG_STEAL, FLAG_FOREIGN, FLAG_OTHER_RUN, FLAG_MIGRATED = "steal", "foreign-cpu", "other-run", "migrated"
FLAG_MEANING = {
    FLAG_STEAL: "host steal above the limit in every attempt",
    FLAG_FOREIGN: "other processes used CPU",
    FLAG_OTHER_RUN: "another vdevperf run was live",
    FLAG_MIGRATED: "a pinned endpoint migrated",
}
# Flags whose window measured something else as well, so that its round leaves the paired ratios. A
# live vdevperf run alone is only reported: if it used CPU, FLAG_FOREIGN says so.
DISTORTING = frozenset({FLAG_STEAL, FLAG_FOREIGN, FLAG_MIGRATED})


def distorted(flags: list[str] | None) -> bool:
    """True if any of ``flags`` means the window's figures include something besides the test."""
    return bool(DISTORTING.intersection(flags or ()))


# Processes outside the test above this share of the machine during a window make it noisy (% of
# all CPUs). Quiet, this guest's own daemons used 0-0.2 %.
FOREIGN_CPU_PCT = 2.0
_PF_KTHREAD = 0x00200000
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    """One user-space process at one instant."""

    ppid: int
    name: str
    cpu_s: float


ProcessTable = dict[tuple[int, int], Proc]  # (pid, start time in ticks) -> Proc


def _stat(pid: str) -> tuple[tuple[int, int], Proc] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None  # exited meanwhile
    name = raw[raw.find("(") + 1 : raw.rfind(")")]
    fields = raw[raw.rfind(")") + 2 :].split()
    if int(fields[6]) & _PF_KTHREAD:
        return None
    # utime + stime, and cutime + cstime: what its children used, once it reaped them.
    used = sum(int(f) for f in fields[11:15])
    return (int(pid), int(fields[19])), Proc(int(fields[1]), name, used * _TICK_S)


def processes() -> ProcessTable:
    """Every user-space process now, keyed so that a reused pid is another process."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (found := _stat(entry.name)) is not None:
            table[found[0]] = found[1]
    return table


def _tree(table: ProcessTable, root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for (pid, _), proc in table.items():
        children.setdefault(proc.ppid, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += children.get(pid, [])
    return tree


def foreign_cpu(
    start: ProcessTable, end: ProcessTable, elapsed_s: float, cpus: int, root: int | None = None, top: int = 3
) -> dict:
    """CPU that processes outside ``root``'s tree (default: this process) used between two tables,
    in % of the machine, with the ``top`` largest users; a process that started in between counts whole."""
    ours = _tree(end, os.getpid() if root is None else root) | _tree(start, os.getpid() if root is None else root)
    used: list[tuple[float, int, str]] = []
    for key, proc in end.items():
        if key[0] in ours:
            continue
        before = start.get(key)
        seconds = proc.cpu_s - (before.cpu_s if before is not None else 0.0)
        if seconds > 0:
            used.append((seconds, key[0], proc.name))
    total = elapsed_s * cpus
    used.sort(reverse=True)
    pct = 100.0 * sum(s for s, _, _ in used) / total if total > 0 else 0.0
    return {
        "cpu_pct": pct,
        "top": [{"pid": pid, "name": name, "cpu_pct": 100.0 * s / total} for s, pid, name in used[:top]],
    }


def migrations(pid: int) -> int | None:
    """How often the scheduler moved ``pid`` to another CPU so far (None if the kernel does not say)."""
    try:
        with open(f"/proc/{pid}/sched") as f:
            for line in f:
                if line.startswith("se.nr_migrations"):
                    return int(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return None
