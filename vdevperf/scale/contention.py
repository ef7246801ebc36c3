"""Creating one namespace while the kernel cleans up a bulk teardown, against an idle baseline.

Seed 002: namespace cleanup runs in one workqueue under the kernel's
namespace locks (net_mutex then, pernet_ops_rwsem and rtnl_lock now), so a
bulk teardown can hold up anyone who creates a namespace meanwhile. A probe
creates the probe namespace (timed), removes it, waits ``interval_s`` and
starts again: first with nothing else going on (idle), then from a thread
while the main thread deletes the N namespaces and waits for the kernel to
settle. The probe namespace is in the ledger like every other name.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

from vdevperf.scale.model import LatencyStats
from vdevperf.scale.session import Session
from vdevperf.scale.setns import percentile
from vdevperf.signals import held
from vdevperf.topology import netns


def stats(samples_ms: list[float]) -> LatencyStats:
    """Median, p99 and max of latencies in ms (zeros if there are none)."""
    if not samples_ms:
        return LatencyStats((), 0.0, 0.0, 0.0)
    return LatencyStats(tuple(samples_ms), statistics.median(samples_ms), percentile(samples_ms, 99), max(samples_ms))


def probe_once(session: Session) -> float:
    """Create and remove the probe namespace; ms the creation took."""
    t0 = time.perf_counter()
    session.create_netns(session.layout.probe)
    elapsed_ms = 1000 * (time.perf_counter() - t0)
    netns.remove(session.layout.probe)
    return elapsed_ms


def idle(session: Session, samples: int, interval_s: float) -> LatencyStats:
    """Probe latency with nothing else running."""
    result = []
    for _ in range(samples):
        result.append(probe_once(session))
        time.sleep(interval_s)
    return stats(result)


class Prober:
    """Probes from a background thread until stopped; a context manager that always stops and joins it."""

    def __init__(self, session: Session, interval_s: float) -> None:
        self._session = session
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._samples: list[float] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vdevperf-scale-probe", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._samples.append(probe_once(self._session))
                self._stop.wait(self._interval_s)
        except BaseException as exc:
            self._error = exc

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LatencyStats:
        """Stop probing (after the probe under way), and the latencies seen; re-raises a probe failure."""
        self._stop.set()
        # SIGINT/SIGTERM wait until the probe under way (a few ms) is over and its
        # namespace removed, so that teardown never races it.
        with held():
            if self._thread.ident is not None:
                self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return stats(list(self._samples))


def during(session: Session, interval_s: float, work: Callable[[], object]) -> tuple[LatencyStats, object]:
    """Probe latency while ``work()`` runs in the calling thread; (latencies, what work returned)."""
    with Prober(session, interval_s) as prober:
        value = work()
        latencies = prober.stop()
    return latencies, value
