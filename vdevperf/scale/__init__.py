"""``vdevperf scale``: how fast namespaces (and their links) are made and unmade, and what they cost.

Layers: model.py (typed config and results), session.py (names, ledger, hub,
teardown), rtnl.py (batched rtnetlink), methods.py (the four creation
methods), memory.py (meminfo, estimate, settling), setns.py, contention.py,
runner.py (the phases), document.py (the JSON file), table.py (text tables);
the CLI subcommand is vdevperf/cli/scale.py.
"""

from vdevperf.scale.model import (
    Contention,
    CreationRun,
    Links,
    Mark,
    MemoryCost,
    Method,
    Phase,
    ScaleConfig,
    ScaleResult,
    SetnsPoint,
    Teardown,
)
from vdevperf.scale.runner import run_scale

__all__ = [
    "Contention",
    "CreationRun",
    "Links",
    "Mark",
    "MemoryCost",
    "Method",
    "Phase",
    "ScaleConfig",
    "ScaleResult",
    "SetnsPoint",
    "Teardown",
    "run_scale",
]
