"""The package's layers: every module of vdevperf imports only downward (parsed with ast, nothing imported).

Each top-level module or package of vdevperf sits in one layer. A module may
import anything in a lower layer, and within its own layer only what is
listed in SAME_LAYER. A module in no layer fails the test by name, so that
a new module gets its place in the table deliberately.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "vdevperf"

# Bottom to top.
LAYERS: list[set[str]] = [
    {"model", "traits", "counters", "errors", "signals", "jsoncheck", "sweeps"},
    {"topology", "measure"},
    {"load"},
    {"remote"},
    {"bench", "rounds", "results", "report", "scale", "lab"},
    {"api"},
    {"cli", "__init__", "__main__"},
]
# Imports between parts of one layer, as they are: (importer, imported).
SAME_LAYER = {
    ("model", "traits"),
    ("traits", "counters"),
    ("sweeps", "model"),
    ("bench", "rounds"),
    ("bench", "results"),
    ("lab", "results"),
    ("scale", "results"),
    ("__main__", "cli"),
}
# Known violations, each with why it is still there (the lead removes them as they are fixed).
KNOWN: dict[tuple[str, str, str], str] = {}


def _layer_of(part: str) -> int | None:
    return next((n for n, layer in enumerate(LAYERS) if part in layer), None)


def _modules() -> list[tuple[str, Path]]:
    """Every module of the package: (dotted name, path)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found.append((".".join(parts), path))
    return found


def _part(module: str) -> str:
    """The top-level module or package of vdevperf that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module: str, path: Path) -> set[str]:
    """The vdevperf modules ``module`` imports anywhere (also inside functions), as dotted names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from vdevperf import bench`` imports vdevperf.bench.
            out |= {f"{base}.{alias.name}" if base == "vdevperf" else base for alias in node.names}
    # A bare ``import vdevperf`` (for its path) adds nothing: every import of a submodule runs the
    # package's __init__ first anyway.
    return {name for name in out if name.startswith("vdevperf.")}


def test_every_module_has_a_layer():
    unplaced = sorted({_part(module) for module, _ in _modules()} - set().union(*LAYERS))
    assert not unplaced, f"vdevperf modules in no layer of {__name__}.LAYERS: {', '.join(unplaced)}; add them"


def _violations() -> list[str]:
    found = []
    for module, path in _modules():
        mine = _part(module)
        for imported in sorted(_imports(module, path)):
            theirs = _part(imported)
            if theirs == mine or (module, mine, theirs) in KNOWN:
                continue
            low, high = _layer_of(theirs), _layer_of(mine)
            if low is None or high is None:
                continue  # reported by test_every_module_has_a_layer
            if low > high or (low == high and (mine, theirs) not in SAME_LAYER):
                found.append(
                    f"{module} imports {imported}: {mine} (layer {high}) may not import {theirs} (layer {low})"
                )
    return found


def test_imports_go_downward_only():
    violations = _violations()
    assert not violations, "\n".join(violations)


def test_known_violations_are_still_real():
    """An entry of KNOWN that no longer happens is removed, so that it cannot hide a new one."""
    for module, _, theirs in KNOWN:
        path = dict(_modules()).get(module)
        assert path is not None and any(_part(i) == theirs for i in _imports(module, path)), (module, KNOWN)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("vdevperf.measure.x", "from vdevperf.load import runner", {"vdevperf.load"}),
        ("vdevperf.measure.x", "from vdevperf import bench", {"vdevperf.bench"}),
        ("vdevperf.measure.x", "def f():\n    import vdevperf.cli", {"vdevperf.cli"}),
        ("vdevperf.measure.x", "from ..load import runner", {"vdevperf.load"}),
        ("vdevperf.measure.x", "from . import cpu", {"vdevperf.measure"}),
        ("vdevperf.measure.x", "import os, json, vdevperf", set()),
    ],
)
def test_imports_are_found_however_written(tmp_path, module, source, expected):
    path = tmp_path / "x.py"
    path.write_text(source)
    assert _imports(module, path) == expected


def test_an_upward_import_is_caught(tmp_path, monkeypatch):
    (tmp_path / "vdevperf" / "measure").mkdir(parents=True)
    (tmp_path / "vdevperf" / "measure" / "bad.py").write_text("from vdevperf.load import runner\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "vdevperf")
    assert _violations() == [
        "vdevperf.measure.bad imports vdevperf.load: measure (layer 1) may not import load (layer 2)"
    ]
