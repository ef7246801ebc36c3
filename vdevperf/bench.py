"""The public operations: run tests on a topology, compare topologies.

This layer composes the others: it builds a topology, runs the load between
its endpoints (repeating it as -i/-I ask), derives the figures and hands
every finished run to a ResultFile at once, so a measured result is on disk
before the next starts. It never prints; progress goes to an optional callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from vdevperf.errors import TopologyError, UnsupportedKind
from vdevperf.load import runner
from vdevperf.load.context import counter_names
from vdevperf.measure import cpu
from vdevperf.measure.metrics import confidence, derive, series, summarize
from vdevperf.measure.sample import RawRun
from vdevperf.model import Iteration, RunResult, RunStatus, TestConfig, TopologySpec
from vdevperf.results import ResultFile, histograms_from_json, raw_to_json
from vdevperf.topology.builder import Topology, build

Progress = Callable[[str], None]


def _sides(topology: Topology, cfg: TestConfig) -> tuple[runner.Side, runner.Side]:
    ends = []
    for site, pinned in ((topology.client, cfg.client_cpu), (topology.server, cfg.server_cpu)):
        address = site.address(cfg.ip_version)
        if address is None:
            raise TopologyError(f"topology {topology.spec.name}",
                                f"has no IPv{cfg.ip_version} address for its endpoints")
        ends.append(runner.Side(netns_path=site.netns_path, address=address, cpu=pinned))
    return ends[0], ends[1]


def iterate(topology: Topology, cfg: TestConfig) -> Iteration:
    """Run the test once on an already built topology."""
    client, server = _sides(topology, cfg)
    raw = runner.run(cfg, client, server, on_spawn=topology.ledger.add_pids)
    return iteration(cfg, raw)


def iteration(cfg: TestConfig, raw: RawRun) -> Iteration:
    """Everything derived from one run's raw measurements."""
    return Iteration(metrics=derive(cfg.test, cfg.flows, raw), endpoints=raw.endpoints,
                     raw=raw_to_json(raw, cfg.flows),
                     cpu_breakdown=cpu.breakdown(raw.samples[0].cpu, raw.samples[-1].cpu,
                                                 raw.samples[-1].t_s - raw.samples[0].t_s),
                     series=series(cfg.test, cfg.flows, raw.samples, counter_names(cfg.flows)))


def measure(topology: Topology, cfg: TestConfig, progress: Progress = lambda message: None) -> RunResult:
    """Run the test on a built topology, repeated until its confidence interval is met (netperf's -i/-I)."""
    iterations: list[Iteration] = []
    verdict = None
    while len(iterations) < cfg.iterations_max:
        if cfg.iterations_max > 1:
            progress(f"{topology.spec.name} {cfg.test} iteration {len(iterations) + 1}/{cfg.iterations_max}")
        iterations.append(iterate(topology, cfg))
        if cfg.iterations_max > 1 and len(iterations) >= max(cfg.iterations_min, 2):
            verdict = confidence(cfg, [it.metrics for it in iterations])
            if verdict.met and len(iterations) >= cfg.iterations_min:
                break
    histograms = [h for it in iterations for h in histograms_from_json(it.raw)]
    return RunResult(
        topology=topology.spec.name,
        topology_source=topology.spec.source,
        config=cfg,
        status=RunStatus.OK,
        metrics=summarize(cfg.test, [it.metrics for it in iterations], histograms),
        iterations=tuple(iterations),
        confidence=verdict,
    )


def run(spec: TopologySpec, configs: Sequence[TestConfig], results: ResultFile,
        progress: Progress = lambda message: None) -> list[RunResult]:
    """Build ``spec`` once, run each config on it, store each run as it finishes."""
    done = []
    with build(spec) as topology:
        for cfg in configs:
            progress(f"{spec.name} {cfg.test}")
            result = measure(topology, cfg, progress)
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
