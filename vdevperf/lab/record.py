"""What a lab run records about itself, and where the command's result files are.

The guest's vdevperf already stores the guest kernel as ``environment.kernel``
of its result file. What it cannot know (that the figures were emulated, the
accelerator, qemu, the host kernel) is handed to it in the environment
variable ``VDEVPERF_LAB`` (JSON), and written by the host next to each result
file the command produced, as ``<result file>.lab`` (not ``*.json``, so that
``report``/``diff`` over a directory do not take it for a result).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from vdevperf.results import DEFAULT_RESULTS_DIR, write_text_atomic

ENV_VAR = "VDEVPERF_LAB"
SIDECAR_SUFFIX = ".lab"
# Flags of vdevperf commands that name the file the command writes.
_OUTPUT_FLAGS = ("-o", "--output", "--resume")
# Commands that write a result file under results/ when given no -o.
_DEFAULT_RESULTS = ("run", "compare")


def facts(accel: str, release: str, source: str, qemu_version: str, mem_mib: int, cpus: int) -> dict:
    """The lab facts a result needs to be read correctly: emulated or not, which kernels, which VM."""
    return {
        "emulated": accel == "tcg",
        "accel": accel,
        "guest_kernel": release,
        "kernel_source": source,
        "host_kernel": platform.release(),
        "qemu": qemu_version,
        "mem_mib": mem_mib,
        "cpus": cpus,
    }


def output_paths(argv: Sequence[str], cwd: Path) -> list[Path]:
    """The files a vdevperf command line says it writes (-o, --output, --resume), made absolute."""
    found = []
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        value = None
        if arg in _OUTPUT_FLAGS and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--output=") or arg.startswith("--resume="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            value = arg[2:]
        if value:
            found.append(Path(os.path.normpath(cwd / value)))
    return found


def shares_for(argv: Sequence[str], cwd: Path, extra: Sequence[Path]) -> tuple[Path, ...]:
    """Directories the guest must write through to the host: -o targets' parents, results/, --share."""
    wanted = [p.parent for p in output_paths(argv, cwd)]
    command = next((a for a in argv if not a.startswith("-")), None)
    if not wanted and command in _DEFAULT_RESULTS:
        wanted.append(cwd / DEFAULT_RESULTS_DIR)
    wanted += [Path(os.path.normpath(cwd / p)) for p in extra]
    unique: list[Path] = []
    for path in sorted(wanted, key=lambda p: (len(p.parts), str(p))):  # parents are mounted before children
        if path == Path("/"):
            raise ValueError("--share: the root directory cannot be the writable share")
        if path not in unique:
            unique.append(path)
    return tuple(unique)


def new_results(argv: Sequence[str], cwd: Path, shares: Sequence[Path], since: float) -> list[Path]:
    """Result files the command wrote: those its flags name, else fresh ``*.json`` results in the shares."""
    named = [p for p in output_paths(argv, cwd) if p.is_file() and p.stat().st_mtime >= since]
    if named:
        return named
    found = []
    for share in shares:
        for path in sorted(share.glob("*.json")):
            if path.stat().st_mtime >= since and _is_result(path):
                found.append(path)
    return found


def _is_result(path: Path) -> bool:
    try:
        with open(path) as f:
            document = json.load(f)
    except (OSError, ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply
        return False
    return isinstance(document, dict) and "schema_version" in document


def sidecar_path(result: Path) -> Path:
    """Where the lab facts of a result file go."""
    return result.with_name(result.name + SIDECAR_SUFFIX)


def write_sidecar(result: Path, lab: dict, run: dict) -> Path:
    """Write the lab facts of ``result`` next to it; the path written."""
    document = {
        "lab": lab,
        "result": result.name,
        "run": run,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    path = sidecar_path(result)
    write_text_atomic(path, json.dumps(document, indent=1) + "\n")
    return path
