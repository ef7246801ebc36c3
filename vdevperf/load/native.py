"""The native (C) hot loops, when they built: one compiled module per loop family.

``vdevperf/load/_native_stream.c`` and ``_native_rr.c`` are built at install (setup.py, optional:
a failed build leaves only the Python loops). A loop family's Python module asks here for its
native counterpart; a run whose engine is "native" uses it when it imported.
"""

from __future__ import annotations

import importlib
from types import ModuleType

PARTS = ("stream", "rr")


def module(part: str) -> ModuleType | None:
    """The compiled module of one loop family (``stream``, ``rr``), or None if it did not build."""
    try:
        return importlib.import_module(f"vdevperf.load._native_{part}")
    except ImportError:
        return None


def missing() -> str | None:
    """Why the native loops cannot run here (a module that did not build), or None if they can."""
    absent = [part for part in PARTS if module(part) is None]
    if not absent:
        return None
    names = ", ".join(f"vdevperf.load._native_{p}" for p in absent)
    return f"{names} not built (no C compiler at install?)"
