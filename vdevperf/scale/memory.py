"""Kernel memory as a scale run sees it: snapshots, the up-front estimate, and waiting for teardown to settle.

Figures come from /proc/meminfo (MemAvailable, as psutil reports it, Slab,
SUnreclaim, Percpu) and from the slab cache that holds ``struct net``
(``net_namespace``).

Deleting a namespace returns at once; the kernel frees it later from a
workqueue (``cleanup_net``), after RCU grace periods. So a teardown is not
over when the calls return: ``wait_settled`` polls until SUnreclaim, the
part of Slab that is not a cache (Slab as a whole also holds dentries and
inodes that any file activity grows), is back near the baseline taken before
creation, and reports when, or that it timed out. Two other signals are
recorded but do not decide. MemAvailable: every other process on the machine
moves it (by ±200 MB within seconds here while other work ran). The
``struct net`` count: on Linux 6.18 the last ~1000 ``struct net`` of a
teardown stayed allocated until the *next* teardown ran (observed, not
configurable), so it is a lagging signal; it is also an upper bound
(objects cached per CPU count as allocated).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

from vdevperf.errors import VdevperfError
from vdevperf.scale.model import Links, MemInfo, Phase, ScaleConfig, Settle

# The up-front estimate (KiB): measured ~205 KiB per namespace and ~105 KiB per
# veth pair on the reference VM, rounded up for kernels and configs that cost more.
NETNS_ESTIMATE_KIB = 300
VETH_ESTIMATE_KIB = 150
MAX_NET_NAMESPACES = "/proc/sys/user/max_net_namespaces"
_NETNS_SLAB = "/sys/kernel/slab/net_namespace/objects"
_POLL_S = 0.1
# Settled: within this share of what creation added, or these floors, of the baseline.
_TOLERANCE_SHARE = 0.05
_UNRECLAIMABLE_FLOOR_KIB = 2048
_AVAILABLE_FLOOR_KIB = 8192
_OBJECTS_FLOOR = 64


def _meminfo() -> dict[str, int]:
    fields = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            fields[key] = int(rest.split()[0])
    return fields


def netns_objects() -> int | None:
    """Allocated ``struct net`` objects (live namespaces plus those awaiting cleanup), or None if unreadable."""
    try:
        with open(_NETNS_SLAB) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def snapshot(t0: float | None = None) -> MemInfo:
    """Memory figures now; ``t_s`` is seconds since ``t0`` (a time.monotonic() value) or 0."""
    now = time.monotonic()
    info = _meminfo()
    return MemInfo(
        t_s=0.0 if t0 is None else now - t0,
        mem_available_kib=psutil.virtual_memory().available // 1024,
        slab_kib=info.get("Slab", 0),
        sunreclaim_kib=info.get("SUnreclaim", 0),
        percpu_kib=info.get("Percpu", 0),
        netns_objects=netns_objects(),
    )


def estimate_kib(config: ScaleConfig) -> int:
    """KiB that N namespaces (with a veth pair each, if any phase adds them) are expected to take."""
    veth = config.links is Links.VETH or Phase.MEMORY in config.phases
    return config.count * (NETNS_ESTIMATE_KIB + (VETH_ESTIMATE_KIB if veth else 0))


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def check_capacity(config: ScaleConfig) -> None:
    """Refuse (VdevperfError naming --count) a count that memory or the kernel's namespace limit cannot take."""
    need = estimate_kib(config)
    available = psutil.virtual_memory().available // 1024
    if need > available // 2:
        per = need // config.count
        fits = max(0, (available // 2) // per)
        raise VdevperfError(
            "--count",
            f"{config.count:,} namespaces need about {need / 1024:,.0f} MiB "
            f"(~{per} KiB each), more than half of the {available / 1024:,.0f} MiB available "
            f"(MemAvailable); use --count {fits:,} or less",
        )
    limit = _read_int(MAX_NET_NAMESPACES)
    if limit is not None and config.count + 2 > limit:
        raise VdevperfError(
            "--count",
            f"{config.count:,} namespaces (plus the hub and a probe) exceed user.max_net_namespaces ({limit:,})",
        )


def _within(value: float, baseline: float, added: float, floor: float) -> bool:
    return value - baseline <= max(floor, _TOLERANCE_SHARE * max(added, 0))


def wait_settled(
    baseline: MemInfo, peak: MemInfo, timeout_s: float, sleep: Callable[[float], None] = time.sleep
) -> Settle:
    """Poll until SUnreclaim is back near ``baseline`` (taken before creation), or ``timeout_s``.

    ``peak`` is the snapshot with everything created; tolerances scale with
    what creation added. Returns when each signal came back, None for one
    that had not by the time polling stopped.
    """
    t0 = time.monotonic()
    series: list[MemInfo] = []
    unreclaimable_s = objects_s = available_s = None
    while True:
        snap = snapshot(t0)
        series.append(snap)
        if unreclaimable_s is None and _within(
            snap.sunreclaim_kib,
            baseline.sunreclaim_kib,
            peak.sunreclaim_kib - baseline.sunreclaim_kib,
            _UNRECLAIMABLE_FLOOR_KIB,
        ):
            unreclaimable_s = snap.t_s
        objects = (snap.netns_objects, baseline.netns_objects, peak.netns_objects)
        if objects_s is None and objects[0] is not None and objects[1] is not None and objects[2] is not None:
            if _within(objects[0], objects[1], objects[2] - objects[1], _OBJECTS_FLOOR):
                objects_s = snap.t_s
        if available_s is None and _within(
            baseline.mem_available_kib,
            snap.mem_available_kib,
            baseline.mem_available_kib - peak.mem_available_kib,
            _AVAILABLE_FLOOR_KIB,
        ):
            available_s = snap.t_s
        if unreclaimable_s is not None or snap.t_s >= timeout_s:
            break
        sleep(_POLL_S)
    return Settle(
        timeout_s=timeout_s,
        unreclaimable_s=unreclaimable_s,
        mem_available_s=available_s,
        netns_objects_s=objects_s,
        series=tuple(series),
    )
