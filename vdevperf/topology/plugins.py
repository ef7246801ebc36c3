"""Plug-in packages: each module of a package that defines one named instance is an entry.

Device kinds (kinds/) and topology features (features/) are both found this way, so that
adding one is adding its module: no list, enum or table to extend elsewhere. Modules whose
name starts with ``_`` are shared helpers, not entries.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def discover(
    package: str, path: Iterable[str], attr: str, cls: type[T], order: Callable[[T], tuple[int, str]]
) -> list[T]:
    """The ``attr`` instance of ``cls`` of every public module of ``package`` (at ``path``), sorted
    by ``order``; a module without one is a TypeError naming it."""
    found: list[T] = []
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        entry = getattr(module, attr, None)
        if not isinstance(entry, cls):
            raise TypeError(f"{module.__name__} defines no {attr} (an instance of {cls.__module__}.{cls.__name__})")
        found.append(entry)
    return sorted(found, key=order)
