"""The public operations: run tests on a topology or against a remote server, compare topologies,
sweep offloads.

This layer composes the others: it builds a topology, sets offload features,
runs the load between its endpoints (repeating it as -i/-I ask), derives
the figures and hands every finished run to a ResultFile at once, so a
measured result is on disk before the next starts. It never prints;
progress goes to an optional callback.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from vdevperf.errors import TopologyError, UnsupportedKind
from vdevperf.load import runner
from vdevperf.load.context import counter_names
from vdevperf.load.tests import TESTS
from vdevperf.measure import capture, cpu
from vdevperf.measure.metrics import confidence, derive, series, summarize
from vdevperf.measure.sample import RawRun
from vdevperf.model import Iteration, RunResult, RunStatus, TestConfig, TopologySpec
from vdevperf.remote.client import RemoteSession, RemoteTarget
from vdevperf.results import ResultFile, histograms_from_json, raw_to_json
from vdevperf.topology.builder import Topology, build
from vdevperf.topology.offload import Device, OffloadRequest, Offloads


@dataclass(frozen=True)
class Step:
    """What is running now, for progress displays: a new test run, or another iteration of it."""

    label: str
    new_run: bool


Progress = Callable[[Step], None]


@dataclass(frozen=True)
class RunOptions:
    """What a run does besides the tests: offload settings (on top of the topology file's),
    whether to probe frame sizes during the warm-up, which runs a resumed file already
    has, and where progress goes."""

    offload: tuple[OffloadRequest, ...] = ()
    capture: bool = False
    done: Callable[[str, TestConfig], bool] = field(default=lambda topology, cfg: False, compare=False)
    progress: Progress = field(default=lambda step: None, compare=False)


def _sides(topology: Topology, cfg: TestConfig) -> tuple[runner.Side, runner.Side]:
    ends = []
    for site, pinned in ((topology.client, cfg.client_cpu), (topology.server, cfg.server_cpu)):
        address = site.address(cfg.ip_version)
        if address is None:
            raise TopologyError(f"topology {topology.spec.name}",
                                f"has no IPv{cfg.ip_version} address for its endpoints")
        ends.append(runner.Side(netns_path=site.netns_path, address=address, cpu=pinned))
    return ends[0], ends[1]


def data_path(topology: Topology) -> list[Device]:
    """The devices traffic crosses: every device of the topology, or ``lo`` when it has none."""
    if topology.spec.devices:
        return [Device(d.name, topology.ifname(d.name), topology.netns_fd(d.netns)) for d in topology.spec.devices]
    return [Device("lo", "lo", topology.netns_fd(ns)) for ns in topology.spec.namespaces]


def _receiver(topology: Topology, cfg: TestConfig) -> capture.CaptureSpec:
    """The device where the test's data arrives: the one holding the receiving endpoint's address."""
    site = topology.client if TESTS[cfg.test].work[0] == "client" else topology.server
    address = site.address(cfg.ip_version)
    ifname, mtu = "lo", 65536
    for dev in topology.spec.devices:
        if dev.netns == site.netns and any(str(a.ip) == address for a in dev.addresses):
            ifname = topology.ifname(dev.name)
            with contextlib.suppress(IndexError):
                mtu = topology.ipr(dev.netns).get_links(ifname=ifname)[0].get("IFLA_MTU")
    seconds = min(capture.MAX_SECONDS, cfg.warmup_s) if cfg.warmup_s > 0 else capture.MAX_SECONDS
    return capture.CaptureSpec(netns_path=site.netns_path, ifname=ifname, mtu=mtu, max_seconds=seconds)


def iteration(cfg: TestConfig, raw: RawRun) -> Iteration:
    """Everything derived from one run's raw measurements."""
    return Iteration(metrics=derive(cfg.test, cfg.flows, raw), endpoints=raw.endpoints,
                     raw=raw_to_json(raw, cfg.flows),
                     cpu_breakdown=cpu.breakdown(raw.samples[0].cpu, raw.samples[-1].cpu,
                                                 raw.samples[-1].t_s - raw.samples[0].t_s),
                     series=series(cfg.test, cfg.flows, raw.samples, counter_names(cfg.flows)),
                     capture=raw.capture)


def iterate(topology: Topology, cfg: TestConfig, probe: bool = False) -> Iteration:
    """Run the test once on an already built topology."""
    client, server = _sides(topology, cfg)
    raw = runner.run(cfg, client, server, on_spawn=topology.ledger.add_pids,
                     capture=_receiver(topology, cfg) if probe else None)
    return iteration(cfg, raw)


def measure(topology: Topology, cfg: TestConfig, progress: Progress = lambda step: None,
            probe: bool = False, offload: dict | None = None) -> RunResult:
    """Run the test on a built topology, repeated until its confidence interval is met (netperf's -i/-I)."""
    return _repeated(topology.spec.name, topology.spec.source, cfg, lambda: iterate(topology, cfg, probe),
                     progress, offload=offload)


def _repeated(name: str, source: str, cfg: TestConfig, once: Callable[[], Iteration], progress: Progress,
              offload: dict | None = None, remote: dict | None = None) -> RunResult:
    """``once`` repeated until the confidence interval is met or -i's maximum ran; the run's result."""
    iterations: list[Iteration] = []
    verdict = None
    while len(iterations) < cfg.iterations_max:
        if iterations:
            progress(Step(f"{name} {cfg.test} iteration {len(iterations) + 1}/{cfg.iterations_max}", new_run=False))
        iterations.append(once())
        if cfg.iterations_max > 1 and len(iterations) >= max(cfg.iterations_min, 2):
            verdict = confidence(cfg, [it.metrics for it in iterations])
            if verdict.met and len(iterations) >= cfg.iterations_min:
                break
    histograms = [h for it in iterations for h in histograms_from_json(it.raw)]
    return RunResult(
        topology=name,
        topology_source=source,
        config=cfg,
        status=RunStatus.OK,
        metrics=summarize(cfg.test, [it.metrics for it in iterations], histograms),
        iterations=tuple(iterations),
        confidence=verdict,
        offload=offload,
        remote=remote,
    )


def _file_requests(spec: TopologySpec) -> list[OffloadRequest]:
    """The offload settings a topology file gives its devices."""
    return [OffloadRequest(feature, enable, dev.name) for dev in spec.devices for feature, enable in dev.offload]


@contextlib.contextmanager
def offloaded(topology: Topology, requests: Sequence[OffloadRequest]) -> Iterator[dict | None]:
    """Apply the topology file's and the given offload settings; restore them afterwards.

    Yields what goes into the result (None when nothing was asked).
    """
    wanted = [*_file_requests(topology.spec), *requests]
    if not wanted:
        yield None
        return
    with Offloads(data_path(topology)) as offloads:
        changed = offloads.apply(wanted)
        yield {"requested": [str(r) for r in wanted], "changed": changed, "state": offloads.state()}


def run(spec: TopologySpec, configs: Sequence[TestConfig], results: ResultFile,
        options: RunOptions = RunOptions()) -> list[RunResult]:
    """Build ``spec`` once, run each config on it (those not done yet), store each run as it finishes."""
    done = []
    todo = [cfg for cfg in configs if not options.done(spec.name, cfg)]
    if not todo:
        return done
    if options.capture:
        capture.prepare()
    with build(spec) as topology, offloaded(topology, options.offload) as offload:
        for cfg in todo:
            options.progress(Step(f"{spec.name} {cfg.test}", new_run=True))
            result = measure(topology, cfg, options.progress, options.capture, offload)
            results.add(result)
            done.append(result)
    return done


# The topology name of runs against a vdevperf server; their source is the server's address.
REMOTE = "remote"


def run_remote(target: RemoteTarget, configs: Sequence[TestConfig], results: ResultFile,
               options: RunOptions = RunOptions()) -> list[RunResult]:
    """Run each config (those not done yet) from here against the vdevperf server at ``target``,
    one authenticated session per config; store each run as it finishes."""
    done = []
    for cfg in configs:
        if options.done(REMOTE, cfg):
            continue
        options.progress(Step(f"{target.label} {cfg.test}", new_run=True))
        result = measure_remote(target, cfg, options.progress)
        results.add(result)
        done.append(result)
    return done


def measure_remote(target: RemoteTarget, cfg: TestConfig, progress: Progress = lambda step: None) -> RunResult:
    """Run the test against a vdevperf server, repeated as -i/-I ask, in one session."""
    client = runner.Side(netns_path=target.netns_path, address="", cpu=cfg.client_cpu)
    with RemoteSession.connect(target, cfg.ip_version) as session:
        return _repeated(REMOTE, target.label, cfg, lambda: iteration(cfg, runner.run(cfg, client, session)),
                         progress, remote={"address": target.label, "server": session.facts})


def compare(specs: Sequence[TopologySpec], configs: Sequence[TestConfig], results: ResultFile,
            options: RunOptions = RunOptions()) -> list[RunResult]:
    """Run every config on every topology; a kind the kernel lacks becomes an 'unsupported' row."""
    done = []
    for spec in specs:
        try:
            done += run(spec, configs, results, options)
        except UnsupportedKind as exc:
            for cfg in configs:
                if options.done(spec.name, cfg):
                    continue
                result = RunResult(topology=spec.name, topology_source=spec.source, config=cfg,
                                   status=RunStatus.UNSUPPORTED, reason=exc.why)
                results.add(result)
                done.append(result)
    return done


def combinations(features: Sequence[str]) -> list[dict[str, bool]]:
    """Every on/off setting of ``features``, all on first."""
    return [dict(zip(features, values, strict=True))
            for values in itertools.product((True, False), repeat=len(features))]


def offload_matrix(spec: TopologySpec, cfg: TestConfig, features: Sequence[str], results: ResultFile,
                   options: RunOptions = RunOptions()) -> list[RunResult]:
    """Run ``cfg`` once per on/off combination of ``features`` (2^k runs) on one built topology."""
    done = []
    if options.capture:
        capture.prepare()
    with build(spec) as topology:
        for combo in combinations(features):
            label = " ".join(f"{f}={'on' if on else 'off'}" for f, on in combo.items())
            options.progress(Step(f"{spec.name} {cfg.test} {label}", new_run=True))
            requests = [*options.offload, *(OffloadRequest(f, on) for f, on in combo.items())]
            with offloaded(topology, requests) as offload:
                result = measure(topology, cfg, options.progress, options.capture,
                                 offload | {"combination": combo})
            results.add(result)
            done.append(result)
    return done
