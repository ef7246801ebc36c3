"""The Python API: run tests on a topology, compare topologies, load result files; typed results back.

For scripts and notebooks, as pyperf's users have it::

    import vdevperf
    result = vdevperf.run("veth", ["TCP_RR"], length_s=2)
    print(result.run("TCP_RR").metrics.transactions_per_s)

Each call turns its arguments into the model's typed configs and hands them to
``bench.run`` or ``bench.compare``, the same operations the CLI uses; the
namespaces they build are torn down when the call returns or raises. Nothing
here prints, exits or installs signal handlers: expected failures raise
VdevperfError (their ``what`` names the netperf-style flag, as on the command
line), notices go to the ``vdevperf`` logger. The helpers that turn settings
into configs, plans and placements are shared with the CLI, so both refuse the
same values with the same words.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdevperf import bench, rounds, sweeps
from vdevperf.errors import VdevperfError, refused
from vdevperf.load import native
from vdevperf.load.tests import TESTS
from vdevperf.model import RunResult, TestConfig, TestName, TopologySpec
from vdevperf.results import DEFAULT_RESULTS_DIR, ResultFile, load, runs_of
from vdevperf.sweeps import Sweep
from vdevperf.topology.offload import OffloadRequest, parse_requests
from vdevperf.topology.spec import bundled_topologies, load_topology

# compare's placement unless told otherwise: benchmarks/placement.py measured the smallest
# round-to-round spread of paired ratios on a 2-vCPU guest with the client on CPU 0, the server on 1
# (one CPU: both on it).
COMPARE_CPUS: tuple[int, int] = (0, 1) if (os.cpu_count() or 1) > 1 else (0, 0)
# compare's default window per round and warm-up: short windows, many rounds (see rounds.py).
COMPARE_LENGTH_S, COMPARE_WARMUP_S = 3.0, 0.5
UNPINNED: tuple[int | None, int | None] = (None, None)

Cpus = tuple[int | None, int | None]
_log = logging.getLogger("vdevperf")


@dataclass(frozen=True)
class Ratio:
    """One cell of a comparison: a metric of one topology against the baseline, over the rounds both ran.

    ``geomean`` is the geometric mean of the per-round ratios (arm over baseline), ``low``/``high`` its
    interval (None with one round), ``verdict`` the Holm-corrected word ("faster", "no significant
    difference", ...)."""

    arm: str
    test: TestName
    metric: str
    rounds: tuple[int, ...]
    ratios: tuple[float, ...]
    geomean: float
    low: float | None
    high: float | None
    p_value: float | None
    p_adjusted: float | None
    verdict: str


@dataclass(frozen=True)
class Results:
    """What a call measured, or a result file holds: its runs, and a comparison's ratios and verdicts."""

    runs: tuple[RunResult, ...]
    # The file the results are in; None when none was asked for.
    path: Path | None = None
    # A comparison's baseline topology, the seed of its round orders and its cells (empty otherwise).
    baseline: str | None = None
    seed: int | None = None
    ratios: tuple[Ratio, ...] = ()

    def run(self, test: TestName | str, topology: str | None = None) -> RunResult:
        """The run of ``test`` (on ``topology``, needed when there are several); KeyError if absent."""
        found = [r for r in self.runs if r.config.test == test and topology in (None, r.topology)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} runs of {test}" + (f" on {topology}" if topology else ""))
        return found[0]

    def ratio(self, arm: str, test: TestName | str, metric: str = "rate") -> Ratio:
        """The comparison cell of ``metric`` of ``test`` on ``arm``; KeyError if absent."""
        for cell in self.ratios:
            if (cell.arm, cell.test, cell.metric) == (arm, test, metric):
                return cell
        raise KeyError(f"no ratio of {metric} for {arm} {test}")


def check_cpu(cpu: int | None) -> None:
    """VdevperfError if ``cpu`` is not a CPU of this machine (None: not pinned)."""
    if cpu is not None and cpu >= (os.cpu_count() or 1):
        raise VdevperfError("-T/--cpu", f"CPU {cpu} does not exist (this machine has {os.cpu_count()})")


def usable_engine(engine: str, notice: Callable[[str], None] = _log.warning) -> str:
    """The engine a run asked for ``engine`` uses: "python" instead of "native" when the C loops did not
    build, said in one line through ``notice`` (the CLI's and the API's one fallback)."""
    why = native.missing() if engine == "native" else None
    if why is None:
        return engine
    notice(f"native loops unavailable ({why}): using the Python loops")
    return "python"


def test_configs(
    tests: Sequence[TestName],
    cpus: Cpus,
    *,
    send_size: int | None = None,
    check_server: bool = True,
    engine: str = "native",
    notice: Callable[[str], None] = _log.warning,
    **fields: Any,
) -> list[TestConfig]:
    """One TestConfig per test with these TestConfig ``fields``; a test's own send size unless
    ``send_size``. The server's CPU is not checked here when a remote server checks its own. The
    configs' engine is ``engine`` if it can run here (usable_engine; ``notice`` hears the fallback)."""
    client_cpu, server_cpu = cpus
    check_cpu(client_cpu)
    if check_server:
        check_cpu(server_cpu)
    try:
        configs = [
            TestConfig(
                test=test,
                send_size=send_size or TESTS[test].default_send_size,
                client_cpu=client_cpu,
                server_cpu=server_cpu,
                engine=engine,
                **_paced(fields, test, tests),
            )
            for test in tests
        ]
    except ValueError as exc:
        raise refused(exc) from None
    used = usable_engine(engine, notice)
    return configs if used == engine else [dataclasses.replace(c, engine=used) for c in configs]


# Each kind of test's pacing fields: -b/--fq-rate pace stream tests, --rate RR tests.
_PACING_FIELDS = {"rate_bps": True, "fq_rate_bps": True, "rate_tps": False}


def _paced(fields: dict[str, Any], test: TestName, tests: Sequence[TestName]) -> dict[str, Any]:
    """``fields`` for ``test``: with stream and RR tests mixed (-t TCP_STREAM,TCP_RR -b 1G --rate 5000)
    each pacing field goes to the tests of its kind only; with no test of its kind, TestConfig refuses it."""
    dropped = {
        key
        for key, stream in _PACING_FIELDS.items()
        if fields.get(key) is not None and test.is_stream != stream and any(t.is_stream == stream for t in tests)
    }
    return {k: v for k, v in fields.items() if k not in dropped}


def make_plan(
    rounds_count: int,
    seed: int | None = None,
    target: bool = False,
    max_time_s: float | None = None,
    max_steal_pct: float = rounds.DEFAULT_MAX_STEAL_PCT,
) -> rounds.Plan:
    """A rounds plan; a random seed unless one is given (it is recorded either way)."""
    try:
        return rounds.Plan(
            rounds=rounds_count,
            seed=seed if seed is not None else secrets.randbelow(2**31),
            target=target,
            max_time_s=max_time_s,
            max_steal_pct=max_steal_pct,
        )
    except ValueError as exc:
        raise refused(exc) from None


def placement(cpus: Cpus | None, default: Cpus = UNPINNED) -> dict[str, Any]:
    """Where the endpoints run, as the table header and the JSON state it (``cpus`` None: ``default``)."""
    chosen = cpus or default
    label = "unpinned" if chosen == UNPINNED else f"-T {chosen[0]},{chosen[1]}".replace("None", "none")
    if not cpus and chosen != UNPINNED:
        label += " (compare's default)"
    return {"client_cpu": chosen[0], "server_cpu": chosen[1], "label": label}


def _tests(tests: str | Sequence[TestName | str]) -> list[TestName]:
    names = tests.split(",") if isinstance(tests, str) else list(tests)
    chosen = []
    for name in names:
        try:
            chosen.append(TestName(str(name).strip().upper()))
        except ValueError:
            known = ", ".join(t.value for t in TestName)
            raise VdevperfError("tests", f"unknown test '{name}' (known: {known})") from None
    if not chosen:
        raise VdevperfError("tests", "name at least one test")
    return chosen


def _spec(topology: str | Path | TopologySpec) -> TopologySpec:
    return topology if isinstance(topology, TopologySpec) else load_topology(str(topology))


def _offload(offload: str | Sequence[str]) -> tuple[OffloadRequest, ...]:
    texts = [offload] if isinstance(offload, str) else list(offload)
    try:
        return tuple(r for text in texts for r in parse_requests(text))
    except ValueError as exc:
        raise VdevperfError("offload", str(exc)) from None


def _stored(operation: str, output: str | Path | None, call: dict[str, object]) -> ResultFile:
    """The results of one call; with ``output``, written there (atomically, after each run) and checked
    writable before anything is built."""
    shown = ", ".join(f"{k}={v!r}" for k, v in call.items())
    results = ResultFile(path=None, command=[f"vdevperf.{operation}({shown})"], notice=_log.warning)
    if output is not None:
        results.claim(Path(output), DEFAULT_RESULTS_DIR)
    return results


def _options(
    offload: tuple[OffloadRequest, ...], capture: bool, progress: Callable[[bench.Step], None] | None
) -> bench.RunOptions:
    return bench.RunOptions(
        offload=offload, capture=capture or bool(offload), progress=progress or (lambda step: None), notice=_log.info
    )


def run(
    topology: str | Path | TopologySpec,
    tests: str | Sequence[TestName | str] = ("TCP_STREAM",),
    *,
    length_s: float = 10.0,
    warmup_s: float = 1.0,
    ip_version: int = 4,
    cpus: Cpus = UNPINNED,
    flows: int = 1,
    iterations: int = 1,
    send_size: int | None = None,
    rr_size: tuple[int, int] = (1, 1),
    offload: str | Sequence[str] = (),
    capture: bool = False,
    output: str | Path | None = None,
    progress: Callable[[bench.Step], None] | None = None,
    rate_bps: float | None = None,
    rate_tps: float | None = None,
    engine: str = "native",
) -> Results:
    """Run netperf tests on one topology (a bundled name or a .toml path), as ``vdevperf run`` does.

    ``cpus`` pins (client, server) as -T does; ``offload`` takes --offload's form ("tso=off,gro=on",
    "c0:tso=off"); ``output`` names a result file written as the CLI writes one; ``rate_bps`` and
    ``rate_tps`` offer a fixed load as -b and --rate do (stream tests take one, RR tests the other);
    ``engine`` picks the load loops as --engine does ("native" falls back to "python", logged, when the
    C loops did not build).
    """
    spec = _spec(topology)
    configs = test_configs(
        _tests(tests),
        cpus,
        send_size=send_size,
        duration_s=length_s,
        warmup_s=warmup_s,
        ip_version=ip_version,
        flows=flows,
        request_size=rr_size[0],
        response_size=rr_size[1],
        iterations_max=iterations,
        iterations_min=iterations,
        rate_bps=rate_bps,
        rate_tps=rate_tps,
        engine=engine,
    )
    requests = _offload(offload)
    plan = make_plan(1)
    results = _stored("run", output, {"topology": spec.name, "tests": [str(c.test) for c in configs]})
    runs = bench.run(spec, configs, results, _options(requests, capture, progress), plan)
    return Results(runs=tuple(runs), path=results.path)


def compare(
    topologies: Sequence[str | Path | TopologySpec] | None = None,
    tests: str | Sequence[TestName | str] = ("TCP_STREAM", "TCP_RR"),
    *,
    baseline: str | None = None,
    rounds: int = rounds.DEFAULT_ROUNDS,
    seed: int | None = None,
    alpha: float = 0.05,
    length_s: float = COMPARE_LENGTH_S,
    warmup_s: float = COMPARE_WARMUP_S,
    ip_version: int = 4,
    cpus: Cpus | None = None,
    flows: int = 1,
    offload: str | Sequence[str] = (),
    output: str | Path | None = None,
    progress: Callable[[bench.Step], None] | None = None,
    sweep: Sweep | None = None,
    rate_bps: float | None = None,
    rate_tps: float | None = None,
    engine: str = "native",
) -> Results:
    """Compare topologies (default: every bundled one) in interleaved rounds, as ``vdevperf compare``
    does: per-round paired ratios against ``baseline`` (default veth, else the first), with verdicts.

    ``cpus`` None pins as compare does by default (``COMPARE_CPUS``); (None, None) leaves the endpoints
    unpinned. ``seed`` makes the round orders reproducible. ``sweep`` (as --sweep: e.g.
    ``Sweep(Param.MTU, (1500, 9000))``) measures each topology at each value instead, every value
    against the first on the same topology; ``baseline`` then cannot be given. ``rate_bps`` and
    ``rate_tps`` drive every path at the same offered load (-b, --rate), to compare the CPU each burns;
    ``engine`` as in run.
    """
    specs = [_spec(t) for t in (topologies if topologies is not None else bundled_topologies())]
    known = [s.name for s in specs]
    if not known:
        raise VdevperfError("topologies", "name at least one topology")
    if sweep is not None and baseline is not None:
        raise VdevperfError("baseline", "cannot go with a sweep: a sweep's baseline is its first value")
    chosen = baseline or ("veth" if "veth" in known else known[0])
    if chosen not in known:
        raise VdevperfError("baseline", f"'{chosen}' is not among the compared topologies ({', '.join(known)})")
    configs = test_configs(
        _tests(tests),
        cpus or COMPARE_CPUS,
        duration_s=length_s,
        warmup_s=warmup_s,
        ip_version=ip_version,
        flows=flows,
        rate_bps=rate_bps,
        rate_tps=rate_tps,
        engine=engine,
    )
    requests = _offload(offload)
    plan = make_plan(rounds, seed)
    judging = bench.Judging(plan=plan, baseline=chosen, alpha=alpha, placement=placement(cpus, COMPARE_CPUS))
    if sweep is not None:
        try:
            sweeps.configs(sweep, configs)
        except ValueError as exc:
            raise VdevperfError("sweep", f"{sweep.text}: {exc}") from None
        call: dict[str, object] = {"topologies": known, "tests": [str(c.test) for c in configs], "sweep": sweep.text}
        results = _stored("compare", output, call)
        bench.sweep_compare(specs, configs, sweep, results, _options(requests, False, progress), judging)
        return Results(
            runs=tuple(results.runs),
            path=results.path,
            baseline=sweep.baseline,
            seed=plan.seed,
            ratios=_ratios(results.comparison),
        )
    results = _stored("compare", output, {"topologies": known, "tests": [str(c.test) for c in configs]})
    bench.compare(specs, configs, results, _options(requests, False, progress), judging)
    wanted = {(s.name, c) for s in specs for c in configs}
    runs = tuple(r for r in results.runs if (r.topology, r.config) in wanted)
    return Results(runs=runs, path=results.path, baseline=chosen, seed=plan.seed, ratios=_ratios(results.comparison))


def load_results(path: str | Path) -> Results:
    """A result file of any schema version vdevperf has written (older ones are upgraded on load)."""
    document = load(Path(path))
    comparison = document["comparison"]
    return Results(
        runs=tuple(runs_of(Path(path), document)),
        path=Path(path),
        baseline=comparison["baseline"] if comparison else None,
        seed=comparison["plan"]["seed"] if comparison else None,
        ratios=_ratios(comparison),
    )


def _ratios(comparison: dict[str, Any] | None) -> tuple[Ratio, ...]:
    """A comparison's cells (as results.py stores them) as Ratio values."""
    if not comparison:
        return ()
    names = {f.name for f in dataclasses.fields(Ratio)}
    cells = []
    for cell in comparison.get("cells", []):
        values = {k: v for k, v in cell.items() if k in names}
        values.update(test=TestName(cell["test"]), rounds=tuple(cell["rounds"]), ratios=tuple(cell["ratios"]))
        cells.append(Ratio(**values))
    return tuple(cells)
