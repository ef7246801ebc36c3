"""What else ran during a window: CPU of processes outside the test (with reaped children), migrations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vdevperf.measure import noise

BURN = f"{sys.executable} -c 'import time\nend = time.monotonic() + 0.6\nwhile time.monotonic() < end: pass'"


def _detached(script: str, pidfile: Path) -> int:
    """Start ``script`` outside this process's tree (its shell parent exits at once); its pid."""
    path = pidfile.with_suffix(".sh")
    path.write_text(f"echo $$ > {pidfile}\n{script}\n")
    subprocess.run(["sh", "-c", f"(sh {path} &)"], check=True)
    deadline = time.monotonic() + 5
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return int(pidfile.read_text())


def test_a_process_outside_the_test_is_counted_even_when_it_exits_inside_the_window(tmp_path):
    # A shell outside our tree waits, runs a CPU burner as its child for 0.6 s, reaps it, then sleeps.
    pid = _detached(f"sleep 0.3\n{BURN}\nsleep 5", tmp_path / "pid")
    try:
        start = noise.processes()
        time.sleep(1.5)  # the burner has started, burned and exited by now
        found = noise.foreign_cpu(start, noise.processes(), 1.5, os.cpu_count() or 1)
    finally:
        os.kill(pid, signal.SIGKILL)
    # 0.6 s of one CPU over 1.5 s x CPUs, seen through the shell's reaped-children time.
    assert found["cpu_pct"] >= 100 * 0.4 / (1.5 * (os.cpu_count() or 1))
    assert any(top["pid"] == pid for top in found["top"])


def test_this_process_and_its_children_are_the_test_not_noise():
    start = noise.processes()
    child = subprocess.Popen(["sh", "-c", BURN])
    end_by = time.monotonic() + 0.8
    while time.monotonic() < end_by:
        pass  # this process burns too
    child.wait()
    found = noise.foreign_cpu(start, noise.processes(), 0.8, os.cpu_count() or 1)
    assert found["cpu_pct"] < noise.FOREIGN_CPU_PCT, found


def test_migrations_are_read_from_the_scheduler():
    before = noise.migrations(os.getpid())
    assert isinstance(before, int) and before >= 0
    assert noise.migrations(2 ** 22 + 12345) is None  # no such process
