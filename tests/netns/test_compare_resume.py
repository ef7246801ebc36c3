"""A compare interrupted after its first round keeps what it measured and --resume runs only the
rounds it lacks, in the same seeded order; progress shows on a terminal and nowhere else."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time

RUN = [
    sys.executable,
    "-m",
    "vdevperf",
    "compare",
    "loopback",
    "veth",
    "-t",
    "TCP_RR",
    "-l",
    "1",
    "--warmup",
    "0.2",
    "--rounds",
    "2",
]


def runs_in(path) -> list[dict]:
    try:
        return json.loads(path.read_text())["runs"]
    except (OSError, ValueError):
        return []


def test_interrupted_compare_keeps_finished_rounds_and_resume_completes_it(tmp_path):
    out = tmp_path / "c.json"
    proc = subprocess.Popen([*RUN, "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not runs_in(out):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGINT, err
    kept = runs_in(out)
    assert [(r["topology"], r["status"], len(r["iterations"])) for r in kept] == [
        ("loopback", "ok", 1),
        ("veth", "ok", 1),
    ]
    first = json.loads(out.read_text())["comparison"]

    done = subprocess.run([*RUN, "--resume", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    final = runs_in(out)
    assert [(r["topology"], [it["round"] for it in r["iterations"]]) for r in final] == [
        ("loopback", [0, 1]),
        ("veth", [0, 1]),
    ]
    assert all(f["iterations"][0] == k["iterations"][0] for f, k in zip(final, kept, strict=True))  # not remeasured
    comparison = json.loads(out.read_text())["comparison"]
    assert comparison["orders"][0] == first["orders"][0] and comparison["plan"]["seed"] == first["plan"]["seed"]
    assert len(comparison["orders"]) == 2
    rows = [line.split()[0] for line in done.stdout.splitlines() if line.startswith(("loopback", "veth"))]
    assert rows == ["loopback", "veth"]
    again = subprocess.run([*RUN, "--resume", str(out)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and [len(r["iterations"]) for r in runs_in(out)] == [2, 2]  # nothing left to do


def test_progress_is_shown_on_a_terminal_only(tmp_path):
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [*RUN, "-l", "0.3", "-o", str(tmp_path / "a.json")], stdout=subprocess.PIPE, stderr=child, text=True
    )
    os.close(child)
    proc.communicate(timeout=60)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.returncode == 0
    assert b"[1/2] round 1 done" in seen and b"[2/2] round 2 done" in seen and b"left" in seen
    quiet = subprocess.run(
        [*RUN, "-l", "0.3", "-o", str(tmp_path / "b.json")], capture_output=True, text=True, timeout=60
    )
    assert quiet.returncode == 0 and quiet.stderr == ""
