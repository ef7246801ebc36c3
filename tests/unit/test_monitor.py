"""vdevperf monitor for real: busy and idle processes, the seed-003 layout, processes that come and go."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time

import psutil
import pytest

from vdevperf.measure.procmon import Monitor, Target, watch
from vdevperf.report import occupancy

BURN = "import time\nt = time.time()\nwhile time.time() - t < {s}: pass\n"


def vdevperf(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdevperf", *args], capture_output=True, text=True, timeout=60, **kwargs
    )


def test_a_busy_command_shows_about_100_percent_and_the_layout_is_seed_003s(tmp_path):
    out = tmp_path / "m.json"
    proc = vdevperf("monitor", "--interval", "0.25", "-o", str(out), "--", sys.executable, "-c", BURN.format(s=1.6))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Labels:"
    assert re.fullmatch(r"   L0: python[\d.]*", lines[1])
    assert lines[2] == "-          -                 -      L0"
    assert lines[3] == "date       time             dt     occ"
    assert lines[4] == "yyyy/mm/dd hh:mm:ss.dec    (s)     (%)"
    rows = lines[5:-1]
    # An empty cell: the command had exited and been reaped by then.
    row = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} +\d+\.\d{3}(?: +(\d+\.\d\d)| {8})")
    assert len(rows) >= 5 and all(row.fullmatch(r) for r in rows)
    assert re.fullmatch(r"total +\d+\.\d{3} +\d+\.\d\d", lines[-1])
    # Whole intervals while it burned (not the last, in which it exited) read close to one CPU.
    busy = [float(row.fullmatch(r).group(1)) for r in rows[1:-2]]
    assert busy and all(85 <= v <= 110 for v in busy), busy
    stored = json.loads(out.read_text())
    assert stored["labels"] == [lines[1].split(": ")[1]] and len(stored["rows"]) == len(rows)


def test_a_sleeping_process_shows_about_0_percent(tmp_path):
    out = tmp_path / "m.csv"
    proc = vdevperf("monitor", "--interval", "0.25", "-o", str(out), "--", "sleep", "1.2")
    assert proc.returncode == 0, proc.stderr
    table = list(csv.reader(out.read_text().splitlines()))
    assert table[0] == ["date", "time", "dt_s", "sleep"]
    values = [float(r[3]) for r in table[1:-1] if r[3]]
    assert values and max(values) < 5
    assert table[-1][0] == "total" and float(table[-1][3]) < 5


def test_processes_that_exit_or_appear_mid_run_do_not_break_the_monitor():
    short = subprocess.Popen([sys.executable, "-c", BURN.format(s=0.4)])
    late = None
    try:
        monitor = Monitor([Target("short", pid=short.pid), Target("late", name="vdp-late-sleep")])
        rows = []
        for n, row in enumerate(watch(monitor, 0.2, until=time.monotonic() + 1.4)):
            rows.append(row)
            if n == 2:  # a process of the second label appears mid-run
                late = subprocess.Popen(["bash", "-c", "exec -a vdp-late-sleep sleep 5"])
    finally:
        short.wait()
        if late is not None:
            late.kill()
            late.wait()
    short_col = [r.occupancy_pct[0] for r in rows]
    assert short_col[0] is not None and short_col[0] > 50  # burning at first
    assert short_col[-1] is None  # gone: blank, not a crash or a zero
    late_col = [r.occupancy_pct[1] for r in rows]
    assert late_col[0] is None and late_col[-1] is not None and late_col[-1] < 5
    total = monitor.total()
    assert total.dt_s == pytest.approx(sum(r.dt_s for r in rows))


def test_text_csv_and_json_agree():
    rows = [occupancy.Row(1_700_000_000.5, 1.0, (12.5, None)), occupancy.Row(1_700_000_001.5, 1.0, (7.25, 3.0))]
    total = occupancy.Row(1_700_000_001.5, 2.0, (9.875, 1.5))
    text = occupancy.row_line(rows[1])
    assert text.endswith("    7.25    3.00")
    parsed = list(csv.reader(occupancy.to_csv(["a", "b"], rows, total).splitlines()))
    assert parsed[1][3:] == ["12.50", ""] and parsed[-1][0] == "total"
    document = json.loads(occupancy.to_json(["a", "b"], 1.0, rows, total))
    assert document["rows"][0]["occupancy_pct"] == [12.5, None]
    assert document["total"]["occupancy_pct"] == [9.875, 1.5]


def test_monitor_csv_neutralises_labels_and_the_text_layout_escapes_them():
    rows = [occupancy.Row(1_700_000_000.5, 1.0, (1.0, 2.0, 3.0))]
    total = occupancy.Row(1_700_000_000.5, 1.0, (1.0, 2.0, 3.0))
    labels = ["=cmd|' /C calc'!A0", "@evil", "ok-label"]
    parsed = list(csv.reader(occupancy.to_csv(labels, rows, total).splitlines()))
    assert parsed[0] == ["date", "time", "dt_s", "'=cmd|' /C calc'!A0", "'@evil", "ok-label"]
    assert parsed[1][3:] == ["1.00", "2.00", "3.00"]
    header = occupancy.header(["evil\x1b[2J\nname", "fine"])
    assert "\x1b" not in header and "evil\\x1b[2J\\nname" in header
    assert header.splitlines()[1] == "   L0: evil\\x1b[2J\\nname"


@pytest.mark.parametrize(
    "pattern, name, matches",
    [
        ("ksoftirqd", "ksoftirqd/0", True),
        ("ksoftirqd", "ksoftirqd/12", True),
        ("python", "python3", True),
        ("ksoftirqd/1", "ksoftirqd/12", True),
        ("ksoftirqd/[1]", "ksoftirqd/12", False),
        ("ksoftirqd/*", "ksoftirqd/3", True),
        ("ksoftirqd/[0]", "ksoftirqd/1", False),
        ("kworker/*:1H*", "kworker/0:1H-kblockd", True),
        ("*irq*", "ksoftirqd/0", True),
        ("sleep", "sleep", True),
        ("sleepy", "sleep", False),
        ("leep", "sleep", False),
        ("s?eep", "sleep", True),
        ("s?eep", "sleeper", False),
    ],
)
def test_names_match_as_a_prefix_or_as_a_glob(pattern, name, matches):
    from vdevperf.measure.procmon import name_matches

    assert name_matches(pattern, name) is matches


def _named_sleeper(comm: str) -> subprocess.Popen:
    """A process whose name (comm) is ``comm``, as a kernel thread's like ksoftirqd/0 would be."""
    code = f"import ctypes, time\nctypes.CDLL(None).prctl(15, {comm.encode()!r})\nprint(flush=True)\ntime.sleep(30)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    proc.stdout.readline()  # renamed by now
    return proc


def test_monitor_finds_processes_by_the_prefix_or_glob_users_type():
    workers = [_named_sleeper("vdpmon/0"), _named_sleeper("vdpmon/1")]
    try:
        found = {
            name: {p.pid for p in Target(name, name=name).processes()}
            for name in ("vdpmon", "vdpmon/[1]", "vdpmon/*", "vdpmon/0")
        }
    finally:
        for w in workers:
            w.kill()
            w.wait()
    pids = [w.pid for w in workers]
    assert found["vdpmon"] == found["vdpmon/*"] == set(pids)
    assert found["vdpmon/[1]"] == {pids[1]} and found["vdpmon/0"] == {pids[0]}


def test_monitor_name_ksoftirqd_finds_the_kernel_threads():
    threads = Target("ksoftirqd", name="ksoftirqd").processes()
    if not threads:
        pytest.skip("no kernel threads visible here (a PID namespace of its own)")
    assert all(p.name().startswith("ksoftirqd/") for p in threads)


@pytest.mark.parametrize(
    "argv, what",
    [
        (["--pid", "999999999"], "--pid 999999999: no such process"),
        ([], "monitor: nothing to watch"),
        (["--name", "x", "-o", "out.txt"], "-o: 'out.txt' must end in .csv or .json"),
        (["--", "/nonexistent/program"], "command /nonexistent/program:"),
    ],
)
def test_bad_monitor_input_gives_one_line(argv, what):
    proc = vdevperf("monitor", "-l", "0.2", *argv)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and what in proc.stderr


def test_a_reader_that_leaves_early_ends_the_monitor_quietly_and_its_command_with_it():
    """``vdevperf monitor -- CMD | head -1``: no traceback, the shell's status for a closed pipe, CMD stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vdevperf", "monitor", "--interval", "0.1", "--", "sleep", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline()
    children = psutil.Process(proc.pid).children(recursive=True)
    assert [c.name() for c in children] == ["sleep"]
    proc.stdout.close()  # what head does after its first line
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 141, err
    assert err == b""
    assert not children[0].is_running() or children[0].status() == psutil.STATUS_ZOMBIE
