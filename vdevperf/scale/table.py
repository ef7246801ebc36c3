"""Text tables of a scale result, one per phase (tabulate); pure functions returning strings."""

from __future__ import annotations

from tabulate import tabulate

from vdevperf.scale.model import Contention, CreationRun, MemoryCost, SetnsPoint, Settle, Teardown


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def marks_table(run: CreationRun) -> str:
    """One row per mark: namespaces done, elapsed time, rate since the previous mark and since the start."""
    rows = [
        [
            run.method.value,
            f"{m.count:,}",
            _num(m.elapsed_s, 3),
            _num(m.rate_per_s, 1),
            _num(m.cumulative_rate_per_s, 1),
        ]
        for m in run.marks
    ]
    return tabulate(
        rows,
        headers=["Method", "Namespaces", "Elapsed s", "ns/s since mark", "ns/s cumulative"],
        disable_numparse=True,
        colalign=("left", "right", "right", "right", "right"),
    )


def _settle_cell(settle: Settle) -> str:
    if settle.settled:
        return _num(settle.settled_s, 1)
    return f"> {settle.timeout_s:g} (timed out)"


def creation_table(runs: tuple[CreationRun, ...]) -> str:
    """One row per method: creation time and rate, memory per namespace, teardown and settle times."""
    rows = []
    for run in runs:
        avail, slab = run.memory_kib
        down = run.teardown
        rows.append(
            [
                run.method.value,
                run.links.value,
                f"{run.namespaces:,}",
                _num(run.total_s, 3),
                _num(run.rate_per_s, 1),
                _num(avail, 0),
                _num(slab, 0),
                _num(down.total_s, 3) if down else "-",
                _num(down.per_namespace_ms, 3) if down else "-",
                _settle_cell(down.settle) if down else "-",
            ]
        )
    return tabulate(
        rows,
        headers=[
            "Method",
            "Links",
            "Namespaces",
            "Create s",
            "ns/s",
            "MemAvail KiB/ns",
            "Slab KiB/ns",
            "Delete s",
            "Delete ms/ns",
            "Settled s",
        ],
        disable_numparse=True,
        colalign=("left", "left") + ("right",) * 8,
    )


def memory_table(cost: MemoryCost) -> str:
    """KiB per namespace with only lo, per veth pair, and both, from MemAvailable and Slab."""
    ns_avail, ns_slab = cost.netns_kib
    rows = [["namespace (lo only)", _num(ns_avail, 0), _num(ns_slab, 0)]]
    veth = cost.veth_kib
    if veth is not None:
        rows.append(["veth pair to the hub", _num(veth[0], 0), _num(veth[1], 0)])
        rows.append(["namespace with its veth pair", _num(ns_avail + veth[0], 0), _num(ns_slab + veth[1], 0)])
    return tabulate(
        rows,
        headers=[f"Per unit ({cost.namespaces:,} namespaces)", "MemAvailable KiB", "Slab KiB"],
        disable_numparse=True,
        colalign=("left", "right", "right"),
    )


def setns_table(points: tuple[SetnsPoint, ...]) -> str:
    """setns latency at each namespace count: into one and back, and a no-op into the current one."""
    rows = [
        [
            f"{p.namespaces:,}",
            f"{p.samples:,}",
            _num(p.round_trip_median_us),
            _num(p.round_trip_p99_us),
            _num(p.noop_median_us),
            _num(p.noop_p99_us),
        ]
        for p in points
    ]
    return tabulate(
        rows,
        headers=["Namespaces", "Samples", "In+back p50 us", "In+back p99 us", "No-op p50 us", "No-op p99 us"],
        disable_numparse=True,
        colalign=("right",) * 6,
    )


def teardown_line(down: Teardown) -> str:
    """One line: what a teardown took and when the kernel had settled."""
    settle = down.settle
    settled = (
        f"kernel settled after {settle.settled_s:.1f} s"
        if settle.settled
        else f"kernel not settled within {settle.timeout_s:g} s (timed out)"
    )
    return (
        f"teardown of {down.namespaces:,} namespaces: {down.total_s:.3f} s ({down.per_namespace_ms:.3f} ms each); "
        f"{settled}"
    )


def contention_table(c: Contention) -> str:
    """Latency of creating one namespace, idle and during the bulk teardown."""
    rows = [
        [label, f"{s.count:,}", _num(s.median_ms, 3), _num(s.p99_ms, 3), _num(s.max_ms, 3)]
        for label, s in (("idle", c.idle), (f"during teardown of {c.namespaces:,}", c.during))
    ]
    return tabulate(
        rows,
        headers=["Create one namespace", "Probes", "p50 ms", "p99 ms", "max ms"],
        disable_numparse=True,
        colalign=("left", "right", "right", "right", "right"),
    )
