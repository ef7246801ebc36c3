"""The public operations: run tests on a topology or against a remote server, compare topologies,
sweep offloads, sweep a parameter (MTU, message size).

This layer composes the others: it builds a topology, sets offload features,
runs the load between its endpoints (repeating it as -i/-I ask), derives
the figures and hands every finished run to a ResultFile at once, so a
measured result is on disk before the next starts. It never prints;
progress goes to an optional callback.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from vdevperf import rounds, sweeps
from vdevperf.counters import counter_names
from vdevperf.errors import TopologyError, UnsupportedKind, VdevperfError
from vdevperf.load import fds, runner
from vdevperf.load.roles import Side, check_socket_options
from vdevperf.load.server import LocalServer
from vdevperf.measure import capture, cpu, noise, paired, tcpinfo
from vdevperf.measure.endpoints import NOT_READ
from vdevperf.measure.metrics import confidence, derive, flow_rates, series, summarize
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import Iteration, RunResult, RunStatus, TestConfig, TopologySpec
from vdevperf.remote.client import RemoteSession, RemoteTarget
from vdevperf.results import ResultFile, histograms_from_json, raw_to_json
from vdevperf.topology.builder import Topology, build
from vdevperf.topology.cleanup import other_live_runs, sweep
from vdevperf.topology.mtu import MtuRefused, set_mtu
from vdevperf.topology.offload import Device, OffloadRequest, Offloads
from vdevperf.traits import TRAITS


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
    has, where progress goes, and where a one-line notice goes (what the sweep of dead
    runs removed)."""

    offload: tuple[OffloadRequest, ...] = ()
    capture: bool = False
    done: Callable[[str, TestConfig], bool] = field(default=lambda topology, cfg: False, compare=False)
    progress: Progress = field(default=lambda step: None, compare=False)
    notice: Callable[[str], None] = field(default=lambda line: None, compare=False)
    # Live output (run --json-stream): each sampling interval of a run as it ends (see interval_record).
    interval: Callable[[dict], None] | None = field(default=None, compare=False)


def _sides(topology: Topology, cfg: TestConfig) -> tuple[Side, Side]:
    ends = []
    for site, pinned in ((topology.client, cfg.client_cpu), (topology.server, cfg.server_cpu)):
        address = site.address(cfg.ip_version)
        if address is None:
            raise TopologyError(
                f"topology {topology.spec.name}", f"has no IPv{cfg.ip_version} address for its endpoints"
            )
        published = site.target(cfg.ip_version) if site is topology.server else None
        ends.append(Side(netns_path=site.netns_path, address=address, cpu=pinned, published=published))
    return ends[0], ends[1]


def check_versions(specs: Sequence[TopologySpec], configs: Sequence[TestConfig]) -> None:
    """Refuse, before anything is built, an IP version that some topology's endpoints lack
    (found while measuring, it ended a compare half way)."""
    for version in sorted({cfg.ip_version for cfg in configs}):
        lacking = [s for s in specs if s.client.address(version) is None or s.server.address(version) is None]
        if lacking:
            names = ", ".join(f"'{s.name}' ({s.source})" if s.source else f"'{s.name}'" for s in lacking)
            raise TopologyError(
                f"-{version}",
                f"topolog{'ies' if len(lacking) > 1 else 'y'} {names} "
                f"{'have' if len(lacking) > 1 else 'has'} no IPv{version} address on both [client] "
                "and [server]; nothing was built",
            )


def prepare(specs: Sequence[TopologySpec], configs: Sequence[TestConfig], options: RunOptions) -> None:
    """Everything done before the first namespace exists: IP versions and descriptors checked, scapy
    imported, then what dead runs left removed (their endpoints would skew this run's CPU figures)."""
    check_versions(specs, configs)
    for cfg in configs:
        check_socket_options(cfg)
    fds.reserve(max((cfg.flows for cfg in configs), default=1), sum(len(s.namespaces) for s in specs))
    if options.capture:
        capture.prepare()
    swept = sweep()
    if swept is not None and not swept.empty:
        options.notice(swept.line())


def data_path(topology: Topology) -> list[Device]:
    """The devices traffic crosses: every device of the topology, or ``lo`` when it has none."""
    if topology.spec.devices:
        return [Device(d.name, topology.ifname(d.name), topology.netns_fd(d.netns)) for d in topology.spec.devices]
    return [Device("lo", "lo", topology.netns_fd(ns)) for ns in topology.spec.namespaces]


def _receiver(topology: Topology, cfg: TestConfig) -> capture.CaptureSpec:
    """The device where the test's data arrives: the one holding the receiving endpoint's address
    (with --bidir, the forward flows' receiver, which the reverse flows' data leaves through)."""
    site = topology.client if TRAITS[cfg.flow_test(0)].work.role == "client" else topology.server
    address = site.address(cfg.ip_version)
    ifname, mtu = "lo", 65536
    for dev in topology.spec.devices:
        if dev.netns == site.netns and any(str(a.ip) == address for a in dev.addresses):
            ifname = topology.ifname(dev.name)
            with contextlib.suppress(IndexError):
                mtu = topology.ipr(dev.netns).get_links(ifname=ifname)[0].get("IFLA_MTU")
    seconds = min(capture.MAX_SECONDS, cfg.warmup_s) if cfg.warmup_s > 0 else capture.MAX_SECONDS
    return capture.CaptureSpec(netns_path=site.netns_path, ifname=ifname, mtu=mtu, max_seconds=seconds)


def noise_facts(cfg: TestConfig, raw: RawRun, steal_pct: float | None, others: Sequence[str]) -> dict:
    """What else happened during the window, and the flags it raises: CPU used by processes
    outside the test, other live vdevperf runs, and a pinned endpoint that migrated anyway.
    (Steal above the limit is flagged where the limit is known, in rounds.gated.)"""
    pinned = {"client": cfg.client_cpu is not None, "server": cfg.server_cpu is not None}
    # Migrations of a server half on another host are not known: None, as for a kernel that does not say.
    moved = {f"{ep.role}{ep.flow}": ep.migrations if ep.migrations is not NOT_READ else None for ep in raw.endpoints}
    flags = []
    if raw.foreign is not None and raw.foreign["cpu_pct"] > noise.FOREIGN_CPU_PCT:
        flags.append(noise.FLAG_FOREIGN)
    if others:
        flags.append(noise.FLAG_OTHER_RUN)
    if any(pinned[ep.role] and moved[f"{ep.role}{ep.flow}"] for ep in raw.endpoints):
        flags.append(noise.FLAG_MIGRATED)
    return {
        "steal_pct": steal_pct,
        "foreign": raw.foreign,
        "other_runs": list(others),
        "migrations": moved,
        "flags": flags,
    }


def iteration(cfg: TestConfig, raw: RawRun, others: Sequence[str] = ()) -> Iteration:
    """Everything derived from one run's raw measurements (``others``: other live runs seen meanwhile)."""
    metrics = derive(cfg.test, cfg.flows, raw, cfg.latency_percentiles, cfg.bidir)
    return Iteration(
        metrics=metrics,
        endpoints=[ep.to_json() for ep in raw.endpoints],
        raw=raw_to_json(raw, cfg.flows),
        cpu_breakdown=cpu.breakdown(raw.samples[0].cpu, raw.samples[-1].cpu, raw.samples[-1].t_s - raw.samples[0].t_s),
        series=series(cfg.test, cfg.flows, raw.samples, counter_names(cfg.flows), cfg.bidir),
        capture=raw.capture,
        noise=noise_facts(cfg, raw, metrics.steal_pct, others),
    )


def _watched(cfg: TestConfig, measure: Callable[[], RawRun]) -> Iteration:
    """One run of ``measure`` as an iteration, with the other vdevperf runs live before or after it
    (their load would inflate this machine-wide CPU figure; the iteration is flagged)."""
    before = other_live_runs()
    raw = measure()
    return iteration(cfg, raw, sorted({*before, *other_live_runs()}))


def interval_record(name: str, cfg: TestConfig, samples: Sequence[Sample]) -> dict:
    """The last sampling interval of a window, for live output: its start and end (s since the window
    opened), the rate in the test's units, CPU shares of the machine, each flow's rate, the senders'
    retransmits where TCP_INFO was read, and UDP jitter where it was measured."""
    first, a, b = samples[0], samples[-2], samples[-1]
    names = counter_names(cfg.flows)
    (figures,) = series(cfg.test, cfg.flows, [a, b], names, cfg.bidir)
    record = {
        "event": "interval",
        "topology": name,
        "test": str(cfg.test),
        "start_s": a.t_s - first.t_s,
        "end_s": b.t_s - first.t_s,
        "rate": figures["rate"],
        "units": TRAITS[cfg.test].units.rate,
        "cpu_util_pct": figures["cpu_util_pct"],
        "softirq_pct": figures["softirq_pct"],
        "flow_rates": flow_rates(cfg.test, cfg.flows, a, b, names, cfg.bidir),
    }
    if "jitter_us" in figures:
        record["jitter_us"] = figures["jitter_us"]
    retransmits = tcpinfo.retransmits(TRAITS[cfg.test], cfg.flows, a.tcp_info, b.tcp_info, cfg.bidir)
    return record if retransmits is None else record | {"retransmits": retransmits}


def iterate(
    topology: Topology, cfg: TestConfig, probe: bool = False, interval: Callable[[dict], None] | None = None
) -> Iteration:
    """Run the test once on an already built topology (``interval``: live output, see interval_record)."""
    client, server = _sides(topology, cfg)

    def measure() -> RawRun:
        with LocalServer(server, on_spawn=topology.ledger.add_pids) as half:
            return runner.run(
                cfg,
                client,
                half,
                on_spawn=topology.ledger.add_pids,
                capture=_receiver(topology, cfg) if probe else None,
                on_interval=(
                    (lambda samples: interval(interval_record(topology.spec.name, cfg, samples)))
                    if interval is not None
                    else (lambda samples: None)
                ),
            )

    return _watched(cfg, measure)


def measure(
    topology: Topology,
    cfg: TestConfig,
    progress: Progress = lambda step: None,
    probe: bool = False,
    offload: dict | None = None,
    plan: rounds.Plan = rounds.DEFAULT_PLAN,
    interval: Callable[[dict], None] | None = None,
) -> RunResult:
    """Run the test on a built topology, repeated until its confidence interval is met (netperf's -i/-I)."""
    return _repeated(
        topology.spec.name,
        topology.spec.source,
        cfg,
        lambda: iterate(topology, cfg, probe, interval),
        progress,
        offload=offload,
        plan=plan,
    )


def _converged(cfg: TestConfig, iterations: Sequence[Iteration]) -> bool:
    """netperf's -i/-I rule: at least MIN iterations, and the interval met once two or more ran; or MAX ran."""
    if len(iterations) >= cfg.iterations_max:
        return True
    if len(iterations) < max(cfg.iterations_min, 2):
        return False
    return confidence(cfg, [it.metrics for it in iterations]).met


def result(
    name: str,
    source: str,
    cfg: TestConfig,
    iterations: Sequence[Iteration],
    offload: dict | None = None,
    remote: dict | None = None,
    sweep: dict | None = None,
) -> RunResult:
    """The run of ``cfg`` made of ``iterations``: their summary, and netperf's -I verdict when -i asked for one."""
    histograms = [h for it in iterations for h in histograms_from_json(it.raw)]
    verdict = None
    if cfg.iterations_max > 1 and len(iterations) >= 2:
        verdict = confidence(cfg, [it.metrics for it in iterations])
    return RunResult(
        topology=name,
        topology_source=source,
        config=cfg,
        status=RunStatus.OK,
        metrics=summarize(cfg.test, [it.metrics for it in iterations], histograms, cfg.latency_percentiles),
        iterations=tuple(iterations),
        confidence=verdict,
        offload=offload,
        remote=remote,
        sweep=sweep,
    )


def _repeated(
    name: str,
    source: str,
    cfg: TestConfig,
    once: Callable[[], Iteration],
    progress: Progress,
    offload: dict | None = None,
    remote: dict | None = None,
    plan: rounds.Plan = rounds.DEFAULT_PLAN,
) -> RunResult:
    """``once`` (gated on steal) repeated until the confidence interval is met or -i's maximum ran."""
    iterations: list[Iteration] = []
    while not iterations or not _converged(cfg, iterations):
        if iterations:
            progress(Step(f"{name} {cfg.test} iteration {len(iterations) + 1}/{cfg.iterations_max}", new_run=False))
        iterations.append(rounds.gated(once, plan))
    return result(name, source, cfg, iterations, offload, remote)


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


def run(
    spec: TopologySpec,
    configs: Sequence[TestConfig],
    results: ResultFile,
    options: RunOptions = RunOptions(),
    plan: rounds.Plan = rounds.DEFAULT_PLAN,
) -> list[RunResult]:
    """Build ``spec`` once, run each config on it (those not done yet), store each run as it finishes.

    Several configs with -i are measured in interleaved rounds, each until its own -i/-I rule is
    met, so that drift does not land on whichever config happens to run last.
    """
    done: list[RunResult] = []
    todo = [cfg for cfg in configs if not options.done(spec.name, cfg)]
    if not todo:
        return done
    prepare([spec], todo, options)
    with build(spec) as topology, offloaded(topology, options.offload) as offload:
        if len(todo) > 1 and any(cfg.iterations_max > 1 for cfg in todo):
            arms = [
                _Arm(
                    spec.name,
                    spec.source,
                    cfg,
                    offload,
                    rounds.Cell(
                        f"{spec.name} {cfg.test}",
                        functools.partial(iterate, topology, cfg, options.capture),
                        finished=functools.partial(_converged, cfg),
                    ),
                )
                for cfg in todo
            ]
            fixed = replace(plan, rounds=max(cfg.iterations_max for cfg in todo), target=False)
            _interleave(arms, results, Judging(plan=fixed), Pairing(), options)
            return [_arm_result(a) for a in arms]
        for cfg in todo:
            options.progress(Step(f"{spec.name} {cfg.test}", new_run=True))
            measured = measure(topology, cfg, options.progress, options.capture, offload, plan, options.interval)
            results.add(measured)
            done.append(measured)
    return done


# The topology name of runs against a vdevperf server; their source is the server's address.
REMOTE = "remote"


def run_remote(
    target: RemoteTarget, configs: Sequence[TestConfig], results: ResultFile, options: RunOptions = RunOptions()
) -> list[RunResult]:
    """Run each config (those not done yet) from here against the vdevperf server at ``target``,
    one authenticated session per config; store each run as it finishes."""
    done = []
    if any(cfg.congestion_control is not None or cfg.nodelay or cfg.zerocopy for cfg in configs):
        raise VdevperfError("-K/-D/-Z", "not carried to a vdevperf server yet; run without --remote")
    if any(
        cfg.asked_rate is not None and cfg.test.traits.work.role == "client" and cfg.test.is_stream for cfg in configs
    ):
        # The sender is the server half, which a remote session does not pace (yet).
        raise VdevperfError("-b/--fq-rate", "a remote server does not pace its sends; pace TCP_STREAM or UDP_STREAM")
    if any(cfg.bidir for cfg in configs):
        raise VdevperfError("--bidir", "not carried to a vdevperf server yet; run without --remote")
    fds.reserve(max((cfg.flows for cfg in configs), default=1))
    for cfg in configs:
        if options.done(REMOTE, cfg):
            continue
        options.progress(Step(f"{target.label} {cfg.test}", new_run=True))
        measured = measure_remote(target, cfg, options.progress)
        results.add(measured)
        done.append(measured)
    return done


def measure_remote(target: RemoteTarget, cfg: TestConfig, progress: Progress = lambda step: None) -> RunResult:
    """Run the test against a vdevperf server, repeated as -i/-I ask, in one session."""
    client = Side(netns_path=target.netns_path, address="", cpu=cfg.client_cpu)
    with RemoteSession.connect(target, cfg.ip_version) as session:
        return _repeated(
            REMOTE,
            target.label,
            cfg,
            lambda: _watched(cfg, lambda: runner.run(cfg, client, session)),
            progress,
            remote={"address": target.label, "server": session.facts},
        )


@dataclass(frozen=True)
class Judging:
    """How an interleaved comparison is run and judged: rounds, baseline arm, significance, target."""

    plan: rounds.Plan = rounds.DEFAULT_PLAN
    baseline: str = ""
    alpha: float = 0.05
    # Target mode: go on until every target metric's interval is within ±target_ci_pct %.
    target_ci_pct: float | None = None
    # What the table header and the JSON say of the placement (e.g. "-T 0,1, compare's default").
    placement: dict = field(default_factory=dict)


DEFAULT_JUDGING = Judging()


@dataclass
class _Arm:
    """One cell of a comparison: a run being built up round by round."""

    name: str
    source: str
    cfg: TestConfig
    offload: dict | None
    cell: rounds.Cell
    # The sweep value this arm measures (sweeps.Sweep.point), None outside a sweep.
    sweep: dict | None = None


@dataclass(frozen=True)
class Pairing:
    """Which arm a stored run belongs to, which arm it is judged against, and what must match between
    the two runs (see measure.paired.analyse). By default: the arm is the topology, every run is
    judged against the Judging's baseline arm, with the same config."""

    arm: Callable[[RunResult], str] = lambda run: run.topology
    baseline: Callable[[RunResult], str] | None = None
    key: Callable[[RunResult], Hashable] = lambda run: run.config


def _interleave(
    arms: Sequence[_Arm], results: ResultFile, judging: Judging, pairing: Pairing, options: RunOptions
) -> rounds.Outcome:
    """Rounds over ``arms``; after each, every run and the verdicts so far are stored at once."""
    stored = results.comparison or {}
    held = [len({it.round for it in a.cell.iterations}) for a in arms]

    def judged() -> list[paired.PairedCell]:
        return paired.analyse(
            [_arm_result(a) for a in arms],
            pairing.arm,
            pairing.baseline or judging.baseline,
            judging.alpha,
            pairing.key,
        )

    def store(outcome: rounds.Outcome, announce: bool = True) -> None:
        for a in arms:
            if a.cell.iterations:
                results.put(_arm_result(a))
        results.comparison = {
            "baseline": judging.baseline,
            "alpha": judging.alpha,
            "method": paired.METHOD,
            "correction": paired.CORRECTION,
            "plan": {
                "rounds": judging.plan.rounds,
                "seed": judging.plan.seed,
                "target_ci_pct": judging.target_ci_pct,
                "max_time_s": judging.plan.max_time_s,
                "max_steal_pct": judging.plan.max_steal_pct,
                "max_retries": judging.plan.max_retries,
            },
            "placement": judging.placement,
            "orders": [*stored.get("orders", [])[: min(held, default=0)], *outcome.orders],
            "stopped": outcome.stopped or "interrupted",
            "seconds": stored.get("seconds", 0.0) + outcome.seconds,
            "cells": [c.to_json() for c in judged()],
        }
        results.save()
        if announce:
            options.progress(Step(f"round {min(held, default=0) + len(outcome.orders)} done", new_run=True))

    outcome = rounds.run(
        [a.cell for a in arms],
        judging.plan,
        converged=lambda: paired.converged(judged(), judging.target_ci_pct or 0.0),
        after_round=store,
        first_round=min(held, default=0),
    )
    store(outcome, announce=False)  # now with why the rounds stopped
    return outcome


def _arm_result(a: _Arm) -> RunResult:
    iterations = sorted(a.cell.iterations, key=lambda it: it.round or 0)
    return result(a.name, a.source, a.cfg, iterations, a.offload, sweep=a.sweep)


def _unsupported(
    spec: TopologySpec, configs: Sequence[TestConfig], results: ResultFile, why: str, sweep: dict | None = None
) -> None:
    """A row saying why for each config not stored yet (at this sweep value, if any)."""
    for cfg in configs:
        if results.find(spec.name, cfg, sweep=sweep) is None:
            results.add(
                RunResult(
                    topology=spec.name,
                    topology_source=spec.source,
                    config=cfg,
                    status=RunStatus.UNSUPPORTED,
                    reason=why,
                    sweep=sweep,
                )
            )


def compare(
    specs: Sequence[TopologySpec],
    configs: Sequence[TestConfig],
    results: ResultFile,
    options: RunOptions = RunOptions(),
    judging: Judging = DEFAULT_JUDGING,
) -> rounds.Outcome:
    """Build every topology at once, then measure every (topology, config) once per round, in a
    shuffled order, until the plan is done; verdicts against ``judging.baseline`` go into ``results``.

    A kind the kernel lacks becomes an 'unsupported' row. A resumed file's iterations are kept and
    only the rounds they lack are run.
    """
    prepare(specs, configs, options)
    with contextlib.ExitStack() as stack:
        arms = []
        for spec in specs:
            try:
                topology = stack.enter_context(build(spec))
            except UnsupportedKind as exc:
                _unsupported(spec, configs, results, exc.why)
                continue
            offload = stack.enter_context(offloaded(topology, options.offload))
            for cfg in configs:
                old = results.find(spec.name, cfg)
                cell = rounds.Cell(
                    f"{spec.name} {cfg.test}",
                    functools.partial(iterate, topology, cfg, options.capture),
                    list(old.iterations) if old is not None else [],
                )
                arms.append(_Arm(spec.name, spec.source, cfg, offload, cell))
        outcome = _interleave(arms, results, judging, Pairing(), options)
    # The file lists runs in the order the command named topologies and tests.
    rank = {(spec.name, cfg): n for n, (spec, cfg) in enumerate(itertools.product(specs, configs))}
    results.runs.sort(key=lambda r: rank.get((r.topology, r.config), -1))
    results.save()
    return outcome


def combinations(features: Sequence[str]) -> list[dict[str, bool]]:
    """Every on/off setting of ``features``, all on first."""
    return [
        dict(zip(features, values, strict=True)) for values in itertools.product((True, False), repeat=len(features))
    ]


def combination_label(combo: dict[str, bool]) -> str:
    """How tables and round orders name an offload combination: ``tso=on gro=off``."""
    return " ".join(f"{f}={'on' if on else 'off'}" for f, on in combo.items())


def offload_matrix(
    spec: TopologySpec,
    cfg: TestConfig,
    features: Sequence[str],
    results: ResultFile,
    options: RunOptions = RunOptions(),
    judging: Judging = DEFAULT_JUDGING,
) -> rounds.Outcome:
    """Run ``cfg`` once per on/off combination of ``features`` (2^k cells) on one built topology, in
    interleaved rounds like compare, each combination judged against all on."""
    prepare([spec], [cfg], options)
    combos = combinations(features)
    judging = replace(judging, baseline=combination_label(combos[0]))
    with build(spec) as topology:
        arms = [_offload_arm(spec, topology, cfg, combo, options) for combo in combos]
        pairing = Pairing(arm=lambda r: combination_label((r.offload or {})["combination"]))
        return _interleave(arms, results, judging, pairing, options)


def _offload_arm(
    spec: TopologySpec, topology: Topology, cfg: TestConfig, combo: dict[str, bool], options: RunOptions
) -> _Arm:
    """The arm of one offload combination: each of its iterations runs with the combination applied
    (and restored after it), and the arm keeps the offload state of its latest."""

    def once() -> Iteration:
        requests = [*options.offload, *(OffloadRequest(f, on) for f, on in combo.items())]
        with offloaded(topology, requests) as offload:
            arm.offload = (offload or {}) | {"combination": combo}
            return iterate(topology, cfg, options.capture)

    arm = _Arm(spec.name, spec.source, cfg, {"combination": combo}, rounds.Cell(combination_label(combo), once))
    return arm


# A sweep pairs a run with its baseline's run of the same test: the configs differ where the size is swept.
SWEEP_PAIRING = Pairing(arm=sweeps.arm, baseline=sweeps.baseline_arm, key=lambda run: str(run.config.test))


def sweep_compare(
    specs: Sequence[TopologySpec],
    configs: Sequence[TestConfig],
    swept: sweeps.Sweep,
    results: ResultFile,
    options: RunOptions = RunOptions(),
    judging: Judging = DEFAULT_JUDGING,
) -> rounds.Outcome:
    """Measure every (topology, value, config) once per round, in a shuffled order, as compare does;
    each value judged against the first value on the same topology (Holm over the whole table).

    Every topology is built once; an MTU is set on all of its devices before each iteration of that
    value (topology.mtu), and a value some device refuses becomes an 'unsupported' row, as does
    every value on a topology whose kind the kernel lacks.
    """
    points = sweeps.configs(swept, list(configs))  # refused values end here, before anything is built
    prepare(specs, [cfg for _, cfgs in points for cfg in cfgs], options)
    judging = replace(judging, baseline=swept.baseline)
    with contextlib.ExitStack() as stack:
        arms: list[_Arm] = []
        for spec in specs:
            try:
                topology = stack.enter_context(build(spec))
            except UnsupportedKind as exc:
                for value, cfgs in points:
                    _unsupported(spec, cfgs, results, exc.why, swept.point(value))
                continue
            offload = stack.enter_context(offloaded(topology, options.offload))
            for value, cfgs in points:
                why = _refused(topology, swept, value)
                if why is not None:
                    _unsupported(spec, cfgs, results, why, swept.point(value))
                    continue
                arms += [_sweep_arm(topology, cfg, swept, value, offload, options) for cfg in cfgs]
        outcome = _interleave(arms, results, judging, SWEEP_PAIRING, options)
    # The file lists runs by topology, then value, then test, as the command named them.
    order = [(spec.name, swept.label(value), cfg.test) for spec in specs for value, cfgs in points for cfg in cfgs]
    rank = {key: n for n, key in enumerate(order)}
    results.runs.sort(key=lambda r: rank.get((r.topology, sweeps.label_of(r.sweep), r.config.test), -1))
    results.save()
    return outcome


def _refused(topology: Topology, swept: sweeps.Sweep, value: int) -> str | None:
    """Why the topology cannot take ``value`` (a device refused the MTU), or None."""
    if swept.param is not sweeps.Param.MTU:
        return None
    try:
        set_mtu(topology, value)
    except MtuRefused as exc:
        return exc.why
    return None


def _sweep_arm(
    topology: Topology, cfg: TestConfig, swept: sweeps.Sweep, value: int, offload: dict | None, options: RunOptions
) -> _Arm:
    """The arm of one value: for an MTU, each iteration sets it on every device first (the other values
    ran on the same devices in between) and the arm keeps what the devices reported at its latest."""
    point = swept.point(value)
    spec = topology.spec

    def once() -> Iteration:
        if swept.param is sweeps.Param.MTU:
            arm.sweep = point | {"applied": set_mtu(topology, value)}
        return iterate(topology, cfg, options.capture)

    label = f"{spec.name} {swept.label(value)} {cfg.test}"
    arm = _Arm(spec.name, spec.source, cfg, offload, rounds.Cell(label, once), sweep=point)
    return arm
