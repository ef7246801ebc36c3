"""An installed wheel works away from the source tree: bundled topologies and the schema are package data,
and the native loops are compiled into it.

A wheel is built from a copy of this tree (so that the build leaves nothing in
it), installed in a fresh venv once per session, and run from a directory
outside the source tree with PYTHONPATH cleared, so only the wheel's files
can be found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import leaked_by, snapshot

from vdevperf.load.native import PARTS
from vdevperf.topology.spec import bundled_topologies

REPO = Path(__file__).resolve().parents[2]
# What the wheel is built from: the package, what pyproject.toml refers to, and setup.py (the C loops).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "vdevperf")


def _check(command: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{command}: {proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def venv() -> Iterator[Path]:
    """A fresh venv with vdevperf installed from a wheel of this tree; removed at the end of the session."""
    with tempfile.TemporaryDirectory(prefix="vdevperf-wheel-") as tmp:
        root = Path(tmp)
        source = root / "src"
        for name in SOURCES:
            if (REPO / name).is_dir():
                shutil.copytree(
                    REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
                )
            else:
                source.mkdir(exist_ok=True)
                shutil.copy2(REPO / name, source / name)
        _check([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist", source])
        wheel = next((root / "dist").glob("vdevperf-*.whl"))
        with zipfile.ZipFile(wheel) as built:  # compiled by this build: the copy had no .so
            assert {f"vdevperf/load/_native_{part}" for part in PARTS} <= {
                name.split(".", 1)[0] for name in built.namelist() if name.endswith(".so")
            }
        _check([sys.executable, "-m", "venv", root / "venv"])
        _check([root / "venv" / "bin" / "python", "-m", "pip", "install", "-q", wheel])
        yield root / "venv"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}


def test_the_wheel_ships_every_bundled_topology(venv, tmp_path):
    code = (
        "import vdevperf; from vdevperf.topology.spec import bundled_topologies; "
        "print(vdevperf.__file__); print(','.join(bundled_topologies()))"
    )
    where, names = _check([venv / "bin" / "python", "-c", code], cwd=tmp_path, env=_clean_env()).stdout.split()
    assert where.startswith(str(venv)), where
    # Every file of the source tree, in the order the tree's own code lists them.
    in_tree = {p.stem for p in (REPO / "vdevperf" / "topologies").glob("*.toml")}
    assert set(names.split(",")) == in_tree
    assert names.split(",") == bundled_topologies()


def test_an_installed_vdevperf_runs_a_bundled_topology_from_anywhere(venv, tmp_path):
    before = snapshot()
    with subprocess.Popen(
        [venv / "bin" / "vdevperf", "run", "veth", "-l", "0.5", "--warmup", "0.2", "-t", "TCP_RR"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_clean_env(),
    ) as proc:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "TCP_RR" in out and "veth" in out
    stored = list((tmp_path / "results").glob("*.json"))
    assert len(stored) == 1
    # The stored file validates against the schema the wheel ships, and reads back.
    report = _check([venv / "bin" / "vdevperf", "report", stored[0]], cwd=tmp_path, env=_clean_env())
    assert "TCP_RR" in report.stdout
    assert not leaked_by(proc.pid, before)


def test_the_installed_wheel_runs_the_native_loops(venv, tmp_path):
    code = "from vdevperf.load import native; print(native.missing())"
    assert _check([venv / "bin" / "python", "-c", code], cwd=tmp_path, env=_clean_env()).stdout.strip() == "None"
