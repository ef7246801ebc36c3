"""A scale run: the phases in order, each reported through a callback as soon as it is done.

1. ``create``, once per method: N namespaces in chunks of ``mark`` (a mark is
   taken after each chunk), a memory snapshot, then the teardown (calls timed)
   and the wait until the kernel has settled, so that the next method starts
   from a quiet kernel.
2. One build of N namespaces with the ``netlink`` method and no links, grown
   in steps to each setns level (``setns``: latency at 1, 16, 64, 512, N);
   at N a memory snapshot, then a veth pair added to every namespace and
   another snapshot (``memory``: per namespace without and with links).
3. ``contention``: probe latency idle, then during the build's bulk teardown
   and its settling; without that phase the build is torn down plainly.

Everything runs inside one Session: whatever happens (error, SIGINT, SIGTERM),
its ``close`` removes every namespace the ledger lists.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from vdevperf.scale import contention, memory, methods, setns
from vdevperf.scale.model import (
    Contention,
    CreationRun,
    Links,
    Mark,
    MemInfo,
    MemoryCost,
    Method,
    Phase,
    ScaleConfig,
    ScaleResult,
    Teardown,
)
from vdevperf.scale.session import Session
from vdevperf.topology import netns
from vdevperf.topology.cleanup import sweep

OnPhase = Callable[[ScaleResult, str], None]


def chunks(count: int, size: int) -> list[range]:
    """1..count in consecutive ranges of ``size`` (the last may be shorter)."""
    return [range(start, min(start + size, count + 1)) for start in range(1, count + 1, size)]


def marks_from(times_s: list[tuple[int, float]]) -> tuple[Mark, ...]:
    """Marks from (namespaces done, seconds since the start) pairs, in order."""
    marks = []
    prev_n, prev_t = 0, 0.0
    for n, t in times_s:
        interval = t - prev_t
        marks.append(
            Mark(count=n, elapsed_s=t, rate_per_s=(n - prev_n) / max(interval, 1e-9), cumulative_rate_per_s=n / t)
        )
        prev_n, prev_t = n, t
    return tuple(marks)


def create_with_marks(session: Session, method: Method, links: Links) -> tuple[float, tuple[Mark, ...]]:
    """Create all N namespaces with ``method``, one mark per chunk; (total seconds, marks)."""
    config = session.config
    done: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    for chunk in chunks(config.count, config.mark):
        methods.create(session, method, chunk, links)
        done.append((chunk[-1], time.perf_counter() - t0))
    return done[-1][1], marks_from(done)


def teardown(session: Session, count: int, before: MemInfo, peak: MemInfo) -> Teardown:
    """Delete namespaces 1..count and wait for the kernel to settle."""
    removed, total_s = session.destroy(session.layout.ns(i) for i in range(1, count + 1))
    settle = memory.wait_settled(before, peak, session.config.settle_timeout_s)
    return Teardown(namespaces=removed, total_s=total_s, settle=settle)


def creation_run(session: Session, method: Method) -> CreationRun:
    """One method: create N with marks, snapshot memory, tear down, settle."""
    config = session.config
    before = memory.snapshot()
    total_s, marks = create_with_marks(session, method, config.links)
    after = memory.snapshot()
    run = CreationRun(
        method=method,
        links=config.links,
        namespaces=config.count,
        total_s=total_s,
        marks=marks,
        before=before,
        after=after,
    )
    return dataclasses.replace(run, teardown=teardown(session, config.count, before, after))


def _build(session: Session, result: ScaleResult, on_phase: OnPhase) -> ScaleResult:
    config = session.config
    baseline = memory.snapshot()
    done = 0
    t0 = time.perf_counter()
    points = []
    for level in config.setns_levels:
        methods.create(session, Method.NETLINK, range(done + 1, level + 1), Links.NONE)
        done = level
        if Phase.SETNS in config.phases:
            points.append(setns.measure(netns.path(session.layout.ns(level)), level, config.setns_samples))
    build_s = time.perf_counter() - t0
    with_namespaces = memory.snapshot()
    result = dataclasses.replace(result, build_total_s=build_s)
    if Phase.SETNS in config.phases:
        result = dataclasses.replace(result, setns=tuple(points), phases_done=result.phases_done + ("setns",))
        on_phase(result, "setns")
    peak = with_namespaces
    if Phase.MEMORY in config.phases:
        for chunk in chunks(config.count, config.mark):
            for i in chunk:
                session.configure_existing(i, Links.VETH)
            session.configure_hub(chunk, Links.VETH)
        peak = memory.snapshot()
        cost = MemoryCost(namespaces=config.count, baseline=baseline, with_namespaces=with_namespaces, with_veth=peak)
        result = dataclasses.replace(result, memory=cost, phases_done=result.phases_done + ("memory",))
        on_phase(result, "memory")
    if Phase.CONTENTION in config.phases:
        idle = contention.idle(session, config.contention_baseline_samples, config.probe_interval_s)
        during, down = contention.during(
            session, config.probe_interval_s, lambda: teardown(session, config.count, baseline, peak)
        )
        assert isinstance(down, Teardown)
        result = dataclasses.replace(
            result,
            build_teardown=down,
            phases_done=result.phases_done + ("contention",),
            contention=Contention(namespaces=config.count, idle=idle, during=during, teardown=down),
        )
        on_phase(result, "contention")
    else:
        down = teardown(session, config.count, baseline, peak)
        result = dataclasses.replace(result, build_teardown=down)
        on_phase(result, "teardown")
    return result


def run_scale(
    config: ScaleConfig,
    on_phase: OnPhase = lambda result, phase: None,
    notice: Callable[[str], None] = lambda line: None,
) -> ScaleResult:
    """Run every phase of ``config``; ``on_phase(result so far, phase name)`` after each one,
    ``notice(line)`` once if the sweep of dead runs before it removed something."""
    memory.check_capacity(config)
    methods.check_tools(config.methods if Phase.CREATE in config.phases else ())
    # Once the checks passed: what dead runs left goes first, as it would skew every figure.
    swept = sweep()
    if swept is not None and not swept.empty:
        notice(swept.line())
    with Session(config) as session:
        session.open()
        result = ScaleResult(config=config, run_id=session.run_id)
        if Phase.CREATE in config.phases:
            for method in config.methods:
                run = creation_run(session, method)
                result = dataclasses.replace(result, creation=result.creation + (run,))
                on_phase(result, f"create {method}")
            result = dataclasses.replace(result, phases_done=result.phases_done + ("create",))
            on_phase(result, "create")
        if config.build_phases:
            result = _build(session, result, on_phase)
    return result
