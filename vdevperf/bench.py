"""The public operations: run one test on a topology, compare topologies.

This layer composes the others: it builds a topology, runs the load between
its endpoints, derives the figures and hands every finished run to a
ResultFile at once, so a measured result is on disk before the next starts.
It never prints; progress goes to an optional callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from vdevperf.errors import TopologyError, UnsupportedKind
from vdevperf.load import runner
from vdevperf.measure.metrics import derive
from vdevperf.model import RunResult, RunStatus, TestConfig, TopologySpec
from vdevperf.results import ResultFile, raw_to_json
from vdevperf.topology.builder import Topology, build

Progress = Callable[[str], None]


def _sites(topology: Topology, cfg: TestConfig) -> tuple[runner.Side, runner.Side]:
    ends = []
    for site, cpu in ((topology.client, cfg.client_cpu), (topology.server, cfg.server_cpu)):
        address = site.ipv4 if cfg.ip_version == 4 else site.ipv6
        if address is None:
            raise TopologyError(f"topology {topology.spec.name}",
                                f"has no IPv{cfg.ip_version} address for its endpoints")
        ends.append(runner.Side(netns_path=site.netns_path, address=address, cpu=cpu))
    return ends[0], ends[1]


def measure(topology: Topology, cfg: TestConfig) -> RunResult:
    """Run one test on an already built topology."""
    client, server = _sites(topology, cfg)
    raw = runner.run(cfg, client, server, on_spawn=topology.ledger.add_pids)
    return RunResult(
        topology=topology.spec.name,
        topology_source=topology.spec.source,
        config=cfg,
        status=RunStatus.OK,
        metrics=derive(cfg.test, raw.samples[0], raw.samples[-1]),
        endpoints=raw.endpoints,
        raw=raw_to_json(raw),
    )


def run(spec: TopologySpec, configs: Sequence[TestConfig], results: ResultFile,
        progress: Progress = lambda message: None) -> list[RunResult]:
    """Build ``spec`` once, run each config on it, store each run as it finishes."""
    done = []
    with build(spec) as topology:
        for cfg in configs:
            progress(f"{spec.name} {cfg.test}")
            result = measure(topology, cfg)
            results.add(result)
            done.append(result)
    return done


def compare(specs: Sequence[TopologySpec], configs: Sequence[TestConfig], results: ResultFile,
            progress: Progress = lambda message: None) -> list[RunResult]:
    """Run every config on every topology; a kind the kernel lacks becomes an 'unsupported' row."""
    done = []
    for spec in specs:
        try:
            done += run(spec, configs, results, progress)
        except UnsupportedKind as exc:
            for cfg in configs:
                result = RunResult(topology=spec.name, topology_source=spec.source, config=cfg,
                                   status=RunStatus.UNSUPPORTED, reason=exc.why)
                results.add(result)
                done.append(result)
    return done
