"""What else ran during a window: CPU of processes outside the test (with reaped children), migrations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vdevperf.measure import noise

# Burns 0.3 s of CPU (however long that takes on a busy machine), then exits.
BURN = f"{sys.executable} -c 'import time\nwhile time.process_time() < 0.3: pass'"


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
    # A shell outside our tree waits, runs a CPU burner as its child, reaps it, says so, then sleeps.
    done = tmp_path / "done"
    pid = _detached(f"sleep 0.3\n{BURN}\ntouch {done}\nsleep 30", tmp_path / "pid")
    try:
        start = noise.processes()
        deadline = time.monotonic() + 20
        while not done.exists():  # the burner has started, burned and exited
            assert time.monotonic() < deadline
            time.sleep(0.05)
        found = noise.foreign_cpu(start, noise.processes(), 1.0, 1, top=10_000)
    finally:
        os.kill(pid, signal.SIGKILL)
    # 0.3 s of CPU, seen through the shell's reaped-children time (10 ms ticks).
    shell = [p for p in found["top"] if p["pid"] == pid]
    assert shell and shell[0]["cpu_pct"] >= 100 * 0.25, found


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def test_this_process_and_its_children_are_the_test_not_noise():
    start, ours = noise.processes(), _own_cpu_s()
    subprocess.run(["sh", "-c", BURN], check=True)
    while _own_cpu_s() - ours < 0.6:
        pass  # this process burns too
    end, ours = noise.processes(), _own_cpu_s() - ours
    counted = noise.foreign_cpu(start, end, 1.0, 1)["cpu_pct"] / 100
    everything = noise.foreign_cpu(start, end, 1.0, 1, root=-1)["cpu_pct"] / 100  # nothing excluded
    # Whatever else the machine does, the difference is exactly this process and its child.
    assert everything - counted == pytest.approx(ours, abs=0.1)


def test_migrations_are_read_from_the_scheduler():
    before = noise.migrations(os.getpid())
    assert isinstance(before, int) and before >= 0
    assert noise.migrations(2**22 + 12345) is None  # no such process
