"""The tests as the load generator runs them: each test's traits (vdevperf.traits) and its loops.

The loop modules say which tests their loops run (their LOOPS); this joins
them with the traits, so adding a test touches no code here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from vdevperf.load import rr, stream
from vdevperf.load.context import Loop, LoopContext, NativeLoops
from vdevperf.model import TestConfig
from vdevperf.traits import TRAITS, TestName, Traits


@dataclass(frozen=True)
class TestDef:
    """How one test runs: its traits, and the loop each side runs."""

    __test__ = False  # not a pytest test class

    traits: Traits
    client_loop: Loop
    server_loop: Loop

    @property
    def name(self) -> TestName:
        """The test's netperf name."""
        return self.traits.name

    @property
    def default_send_size(self) -> int:
        """-m when the user gives none (the CLI reads it here)."""
        return self.traits.default_send_size


# Every test, in TestName's order; a test without loops fails here, at import, by its name.
_LOOPS = stream.LOOPS | rr.LOOPS
TESTS: dict[TestName, TestDef] = {name: TestDef(TRAITS[name], *_LOOPS[name]) for name in TestName}


def flow_def(cfg: TestConfig, flow: int) -> TestDef:
    """How flow ``flow`` of ``cfg`` runs: its own test's loops and traits (with --bidir, half run the reverse)."""
    return TESTS[cfg.flow_test(flow)]


def _native_loops(family: ModuleType) -> NativeLoops:
    """A loop family's NATIVE_LOOPS (none if it has no native loops)."""
    return dict(getattr(family, "NATIVE_LOOPS", {}))


# Every loop with a native version, with the configs it runs natively for.
NATIVE_LOOPS: NativeLoops = _native_loops(stream) | _native_loops(rr)


def engine_of(loop: Loop, ctx: LoopContext) -> str:
    """The engine ``loop`` runs with in ``ctx``: "native" if the run may (ctx.native) and the loop has a
    native version for its config, else "python" (what an endpoint reports)."""
    natively = NATIVE_LOOPS.get(loop)
    return "native" if ctx.native and natively is not None and natively(ctx.cfg) else "python"
