"""Results that must not collide or get lost, through real runs: concurrent default names, a full disk
(a tiny tmpfs mounted by the test) and a read-only output, each checked for leftovers."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import leaked_by, snapshot

from vdevperf.results import load

REPO = Path(__file__).resolve().parents[2]
RUN = ("run", "loopback", "-t", "TCP_RR", "-l", "0.3", "--warmup", "0.1", "-q")


def _env(**extra: str) -> dict[str, str]:
    # This tree's vdevperf, whatever the working directory.
    return os.environ | {"PYTHONPATH": str(REPO)} | extra


@dataclass
class Finished:
    """A finished vdevperf process: its pid (to find what it left), status and output."""

    pid: int
    returncode: int
    stdout: str
    stderr: str


def vdevperf(*args: str, cwd: Path, **extra: str) -> Finished:
    with subprocess.Popen(
        [sys.executable, "-m", "vdevperf", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=_env(**extra),
    ) as proc:
        out, err = proc.communicate(timeout=120)
    return Finished(proc.pid, proc.returncode, out, err)


@pytest.fixture
def mount(tmp_path) -> Iterator[Callable[..., Path]]:
    """Mount a 64 KiB tmpfs (options as given) on a new directory; every mount is undone at the end."""
    mounted: list[Path] = []

    def tmpfs(name: str, options: str = "") -> Path:
        where = tmp_path / name
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=64k{options}", "tmpfs", str(where)], check=True)
        mounted.append(where)
        return where

    yield tmpfs
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=True)


def _fill(directory: Path) -> None:
    """Take every block of the filesystem, so that the next write fails with ENOSPC."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_runs_started_together_store_distinct_files(tmp_path):
    before = snapshot()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "vdevperf", *RUN],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert not leaked_by(proc.pid, before)
    stored = sorted((tmp_path / "results").iterdir())
    assert len(stored) == 2
    assert [len(load(p)["runs"]) for p in stored] == [1, 1]


def test_a_full_disk_keeps_the_measurement_and_says_where(tmp_path, mount):
    full, spare = mount("full"), tmp_path / "spare"
    spare.mkdir()
    _fill(full)
    before = snapshot()
    out = full / "r.json"
    proc = vdevperf(*RUN, "-o", str(out), cwd=tmp_path, TMPDIR=str(spare))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"vdevperf: {out}: cannot write the results (No space left on device); they are in {spare / 'r.json'} instead"
    ]
    assert f"results: {spare / 'r.json'}" in proc.stdout
    assert len(load(spare / "r.json")["runs"]) == 1
    assert [p.name for p in full.iterdir()] == ["filler"]  # no temporary file left on the full disk
    assert not leaked_by(proc.pid, before)


def test_a_full_disk_under_the_default_path_is_refused_before_measuring(mount):
    full = mount("full")
    (full / "results").mkdir()
    _fill(full)
    before = snapshot()
    proc = vdevperf(*RUN, cwd=full)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.endswith(": cannot create the result file: No space left on device; name one with -o FILE\n")
    assert sorted(p.name for p in full.iterdir()) == ["filler", "results"]
    assert list((full / "results").iterdir()) == []
    assert not leaked_by(proc.pid, before)


def test_a_read_only_output_is_refused_before_anything_is_built(tmp_path, mount):
    read_only = mount("ro", ",ro")
    before = snapshot()
    out = read_only / "r.json"
    proc = vdevperf("run", "veth", "-o", str(out), cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        2,
        f"vdevperf: {out}: cannot write results there: Read-only file system\n",
    )
    assert proc.stdout == "" and not leaked_by(proc.pid, before)
