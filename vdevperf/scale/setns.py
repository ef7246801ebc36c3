"""setns latency: entering a namespace and coming back, and a no-op setns, timed per call.

Seed 001 saw the time of a setns grow with the number of namespaces (5 µs at
one, 550 ms at 512 under an old kernel's lock). Each sample here is one
``setns`` into the target namespace plus one back into our own, timed with
``perf_counter_ns`` around the pair; the no-op sample is one ``setns`` into the
namespace the thread is already in, which is the floor (Python's call
overhead included, ~1 µs) that the round trip is to be read against.

The thread is outside its own namespace only inside the timed loop, with
SIGINT and SIGTERM blocked there, so a signal can never strand it elsewhere.
"""

from __future__ import annotations

import ctypes
import os
import signal
import statistics
import time

from vdevperf.scale.model import SetnsPoint

CLONE_NEWNET = 0x40000000
_SELF_NS = "/proc/thread-self/ns/net"
_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile of ``values`` (nearest rank), which must not be empty."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def _round_trips(target_fd: int, own_fd: int, samples: int) -> tuple[list[int], list[int]]:
    setns, clock = _libc.setns, time.perf_counter_ns
    round_trip = [0] * samples
    noop = [0] * samples
    failed = 0
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        for k in range(samples):
            t0 = clock()
            a = setns(target_fd, CLONE_NEWNET)
            b = setns(own_fd, CLONE_NEWNET)
            t1 = clock()
            c = setns(own_fd, CLONE_NEWNET)
            t2 = clock()
            round_trip[k] = t1 - t0
            noop[k] = t2 - t1
            failed |= a | b | c
    finally:
        # Whatever happened, the thread ends in its own namespace.
        if setns(own_fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the original namespace failed")
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    if failed:
        raise OSError(ctypes.get_errno(), f"setns failed: {os.strerror(ctypes.get_errno())}")
    return round_trip, noop


def measure(target_path: str, namespaces: int, samples: int) -> SetnsPoint:
    """setns round-trip and no-op latency into the namespace at ``target_path``, ``samples`` times."""
    target_fd = os.open(target_path, os.O_RDONLY | os.O_CLOEXEC)
    own_fd = os.open(_SELF_NS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        round_trip, noop = _round_trips(target_fd, own_fd, samples)
    finally:
        os.close(target_fd)
        os.close(own_fd)
    rt_us = [ns / 1000 for ns in round_trip]
    noop_us = [ns / 1000 for ns in noop]
    return SetnsPoint(
        namespaces=namespaces,
        samples=samples,
        round_trip_median_us=statistics.median(rt_us),
        round_trip_p99_us=percentile(rt_us, 99),
        noop_median_us=statistics.median(noop_us),
        noop_p99_us=percentile(noop_us, 99),
    )
