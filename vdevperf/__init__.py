"""vdevperf: netperf-style throughput and CPU cost of Linux virtual network devices.

The Python API, for scripts and notebooks (see README, "Python API")::

    import vdevperf
    result = vdevperf.run("veth", ["TCP_RR"], length_s=2)
    cmp = vdevperf.compare(["veth", "bridge"], ["TCP_RR"], rounds=4)
    old = vdevperf.load_results("results/vdevperf-20260101-120000.json")

The names below are loaded on first use, so that ``import vdevperf`` stays
cheap (no scipy, pyroute2 or psutil) and builds nothing; the CLI imports the
submodules it needs directly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vdevperf.api import Ratio, Results, compare, load_results, run
    from vdevperf.errors import VdevperfError
    from vdevperf.model import RunResult, TestConfig, TestName

# Public name -> the module that defines it.
_LAZY = {
    "run": "vdevperf.api",
    "compare": "vdevperf.api",
    "load_results": "vdevperf.api",
    "Results": "vdevperf.api",
    "Ratio": "vdevperf.api",
    "VdevperfError": "vdevperf.errors",
    "RunResult": "vdevperf.model",
    "TestConfig": "vdevperf.model",
    "TestName": "vdevperf.model",
}

__all__ = [
    "Ratio",
    "Results",
    "RunResult",
    "TestConfig",
    "TestName",
    "VdevperfError",
    "compare",
    "load_results",
    "run",
]


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'vdevperf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
