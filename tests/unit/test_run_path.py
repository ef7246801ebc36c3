"""The one run path over loopback: runner.run drives any ServerHalf the same way (real sockets, no root).

A recording wrapper around a LocalServer shows the sequence every server half
sees (a RemoteSession answers the same calls over its control connection), and
the reports that come back.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vdevperf.counters import slot_index
from vdevperf.load import runner
from vdevperf.load.roles import Greet, Side
from vdevperf.load.server import LocalServer
from vdevperf.measure.endpoints import NOT_READ, Finished, Ready
from vdevperf.measure.watch import Reading
from vdevperf.model import TestConfig, TestName

LOOPBACK = Side(netns_path=None, address="127.0.0.1")
SHORT = {"duration_s": 0.3, "warmup_s": 0.05, "interval_s": 0.1}


class Recording:
    """A ServerHalf that records what the run asks of it, and passes it on."""

    def __init__(self, half: LocalServer) -> None:
        self.half = half
        self.calls: list[str] = []

    def open(self, cfg: TestConfig) -> tuple[list[tuple[str, int]], Greet | None]:
        self.calls.append("open")
        return self.half.open(cfg)

    def start(self) -> list[Ready]:
        self.calls.append("start")
        return self.half.start()

    def edge(self) -> None:
        self.calls.append("edge")
        self.half.edge()

    def mark(self) -> Callable[[], Reading]:
        self.calls.append("mark")
        return self.half.mark()

    def stop(self) -> list[Finished]:
        self.calls.append("stop")
        return self.half.stop()


@pytest.mark.parametrize("test", [TestName.TCP_STREAM, TestName.TCP_MAERTS, TestName.TCP_RR])
def test_a_run_drives_its_server_half_in_order_and_reports_every_endpoint(test):
    cfg = TestConfig(test=test, flows=2, **SHORT)
    with LocalServer(LOOPBACK) as half:
        server = Recording(half)
        raw = runner.run(cfg, LOOPBACK, server)
    marks = len(raw.samples)
    assert server.calls == ["open", "start", "edge", *["mark"] * marks, "edge", "stop"]
    assert [(e.flow, e.role) for e in raw.endpoints] == [(0, "client"), (0, "server"), (1, "client"), (1, "server")]
    for report in raw.endpoints:
        # Every endpoint here ran on this host: its migrations were read at the window's edges.
        assert report.migrations is not NOT_READ
        assert sum(report.finished.observed_cpus.values()) == marks
    # The server half's counters are in every sample, where the layout puts them.
    work = test.traits.work
    for flow in range(cfg.flows):
        at = [s.counters[slot_index(flow, work.role, work.slot)] for s in (raw.samples[0], raw.samples[-1])]
        assert at[1] > at[0] > 0
    assert all(s.remote_cpu is None and s.remote_t_s is None for s in raw.samples)  # one host: no remote CPU


def test_a_server_half_read_for_another_host_adds_its_clock_and_cpu_times():
    cfg = TestConfig(test=TestName.TCP_RR, **SHORT)
    with LocalServer(LOOPBACK, host_readings=True) as half:
        raw = runner.run(cfg, LOOPBACK, half)
    assert all(s.remote_cpu is not None and s.remote_t_s is not None for s in raw.samples)
    assert raw.samples[0].remote_t_s == 0.0 and raw.samples[-1].remote_t_s > 0
