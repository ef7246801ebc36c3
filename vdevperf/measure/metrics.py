"""Figures of one run from its raw measurements, in netperf's units.

Work is counted where netperf counts it (each flow's test's traits say where):
bytes at the receiver for stream tests, completed transactions at the client
for RR tests (with --bidir, the flows running the reverse test count at the
other end: traits.flow_test decides which test a flow runs), over the window
between the first and the last sample. CPU figures come from the same two
samples, so work and CPU time cover exactly the same interval. With several
flows, rates add up and latency percentiles come from the merged histogram of
all flows.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

from vdevperf.counters import (
    BYTES_SENT,
    MESSAGES_RECEIVED,
    MESSAGES_SENT,
    ROLES,
    SLOTS,
    TRANSACTIONS,
    counter_names,
    endpoint_index,
    slot_index,
)
from vdevperf.measure import cpu, histogram, tcpinfo
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.measure.stats import confidence_interval, jain_index
from vdevperf.model import Confidence, FlowMetrics, MetricInterval, Metrics, TestConfig
from vdevperf.traits import TRAITS, TestName, Work, flow_tests, reversed_flow


def _deltas(first: Sample, last: Sample, at: Sequence[Work]) -> list[int]:
    """Per flow, how much one counter grew over the window: flow f's at ``at[f]`` (role and slot)."""
    return [last.counters[i] - first.counters[i] for i in (slot_index(f, w.role, w.slot) for f, w in enumerate(at))]


def _work(test: TestName, flows: int, bidir: bool) -> list[Work]:
    """Per flow, where its work is counted: its own test's (with --bidir, half count at the other end)."""
    return [TRAITS[t].work for t in flow_tests(test, flows, bidir)]


def _senders(at: Sequence[Work], slot: int) -> list[Work]:
    """Per flow, ``slot`` of the end that sends to the one counting its work (a stream's sender)."""
    return [Work("server" if w.role == "client" else "client", slot) for w in at]


def latency_fields(hist: dict[int, int]) -> dict[str, float | None]:
    """The latency fields of Metrics from a (merged) histogram."""
    summary = histogram.summary_us(hist)
    return {f"{key}_latency_us": value for key, value in summary.items()}


def asked_percentiles(hist: dict[int, int], percentiles: Sequence[float]) -> dict[str, float] | None:
    """Metrics.latency_percentiles_us: the --percentiles from the same histogram; None if none were asked."""
    return histogram.percentiles_us(hist, percentiles) if percentiles else None


def _process_split(
    first: Sample, last: Sample, flows: int, used: cpu.CpuDelta, remote: cpu.CpuDelta | None
) -> dict[str, float | None]:
    """Busy CPU split into client processes, server processes and the rest, in % of the machine.

    With a remote server half, the server processes' share is of the server host (``remote``)
    and the rest is what the client host spent outside its client processes.
    """
    if first.proc_cpu_s is None or last.proc_cpu_s is None or used.total_s <= 0:
        return {}
    start, end = first.proc_cpu_s, last.proc_cpu_s
    share: dict[str, float | None] = {}
    for role in ROLES:
        machine = remote if role == "server" and remote is not None else used
        seconds = sum(end[i] - start[i] for i in (endpoint_index(f, role) for f in range(flows)))
        share[f"{role}_cpu_pct"] = 100.0 * seconds / machine.total_s if machine.total_s > 0 else None
    clients, servers_here = share["client_cpu_pct"], 0.0 if remote is not None else share["server_cpu_pct"]
    # Never None: both are shares of this host, whose total was checked above.
    if clients is not None and servers_here is not None:
        share["elsewhere_cpu_pct"] = used.util_pct - clients - servers_here
    return share


def _remote_delta(first: Sample, last: Sample) -> cpu.CpuDelta | None:
    """The server host's CPU seconds over the window, by its own clock (None for a local run)."""
    if first.remote_cpu is None or last.remote_cpu is None or first.remote_t_s is None or last.remote_t_s is None:
        return None
    return cpu.delta(first.remote_cpu, last.remote_cpu, last.remote_t_s - first.remote_t_s)


def jitter_us(test: TestName, flows: int, a: Sample, b: Sample, names: Sequence[str]) -> float | None:
    """Metrics.jitter_us between samples ``a`` and ``b`` (counters found by ``names``): RFC 3550's estimate
    averaged over the packets that arrived in between (UDP_STREAM: datagrams received; UDP_RR:
    transactions) of all flows. None for TCP tests, files older than the jitter_sum_ns slot, and runs
    whose datagrams carried no stamp (-m or -M under 16 bytes: the slot stays 0)."""
    traits = TRAITS[test]
    if not traits.udp:
        return None
    role, packets_slot = traits.work.role, SLOTS[TRANSACTIONS if traits.latency else MESSAGES_RECEIVED]
    try:
        at = [
            (names.index(f"flow{f}.{role}.jitter_sum_ns"), names.index(f"flow{f}.{role}.{packets_slot}"))
            for f in range(flows)
        ]
    except ValueError:
        return None
    summed = sum(b.counters[j] - a.counters[j] for j, _ in at)
    packets = sum(b.counters[p] - a.counters[p] for _, p in at)
    return summed / packets / 1000 if summed > 0 and packets > 0 else None


def derive(test: TestName, flows: int, raw: RawRun, percentiles: Sequence[float] = (), bidir: bool = False) -> Metrics:
    """Metrics over the window from the first to the last sample of ``raw`` (``bidir``: --bidir's flows)."""
    first, last, histograms = raw.samples[0], raw.samples[-1], raw.histograms
    asked = None
    traits = TRAITS[test]
    at = _work(test, flows, bidir)
    elapsed = last.t_s - first.t_s
    per_flow = _deltas(first, last, at)
    work = sum(per_flow)
    used = cpu.delta(first.cpu, last.cpu, elapsed)
    remote = _remote_delta(first, last)
    # The figures every run has are passed by name; these may be None.
    common: dict[str, float | None] = {
        "steal_pct": used.steal_pct,
        "sampler_cpu_pct": None if raw.sampler_cpu_s is None else 100.0 * raw.sampler_cpu_s / elapsed,
        **_process_split(first, last, flows, used, remote),
    }
    if remote is not None:
        # Remote service demand: the server host's busy time over the same work, as netperf's -C.
        common |= {
            "remote_cpu_util_pct": remote.util_pct,
            "remote_softirq_pct": remote.softirq_pct,
            traits.units.remote_demand_field: cpu.service_demand_us(remote, work / traits.units.per_demand_unit),
        }
    if traits.stream:
        rates = [w * 8 / elapsed / 1e6 for w in per_flow]
        extra: dict[str, float | None] = {
            "throughput_mbps": sum(rates),
            "transactions_per_s": None,
            "mean_latency_us": None,
            "service_demand_us_per_kb": cpu.service_demand_us(used, work / 1024),
            "service_demand_us_per_tr": None,
            "send_throughput_mbps": sum(_deltas(first, last, _senders(at, BYTES_SENT))) * 8 / elapsed / 1e6,
        }
        if bidir:
            back = [reversed_flow(flows, bidir, f) for f in range(flows)]
            extra |= {
                "forward_mbps": sum(r for r, b in zip(rates, back, strict=True) if not b),
                "reverse_mbps": sum(r for r, b in zip(rates, back, strict=True) if b),
            }
        if traits.udp:
            sent = sum(_deltas(first, last, _senders(at, MESSAGES_SENT)))
            received = sum(_deltas(first, last, [Work(w.role, MESSAGES_RECEIVED) for w in at]))
            extra |= {
                "messages_sent": sent,
                "messages_received": received,
                "loss_pct": 100.0 * max(sent - received, 0) / sent if sent else None,
            }
    else:
        rates = [w / elapsed for w in per_flow]
        extra = {
            "throughput_mbps": None,
            "transactions_per_s": sum(rates),
            "service_demand_us_per_kb": None,
            "service_demand_us_per_tr": cpu.service_demand_us(used, work),
            **latency_fields(merged := histogram.merge(histograms)),
        }
        asked = asked_percentiles(merged, percentiles)
    extra["jitter_us"] = jitter_us(test, flows, first, last, counter_names(flows))
    return Metrics(
        elapsed_s=elapsed,
        cpu_util_pct=used.util_pct,
        softirq_pct=used.softirq_pct,
        **common,
        **extra,
        latency_percentiles_us=asked,
        retransmits=tcpinfo.retransmits(traits, flows, first.tcp_info, last.tcp_info, bidir),
        flows=tuple(FlowMetrics(flow=i, rate=r) for i, r in enumerate(rates)),
        min_flow_rate=min(rates),
        max_flow_rate=max(rates),
        jain_index=jain_index(rates),
    )


def rate_key(test: TestName) -> str:
    """The Metrics field holding a test's headline rate."""
    return TRAITS[test].units.rate_field


def figure(test: TestName, name: str, m: Metrics) -> float | None:
    """One compared figure of a run: ``rate`` and ``service_demand`` in the test's units, else a Metrics field."""
    if name == "rate":
        return getattr(m, rate_key(test))
    if name == "service_demand":
        return getattr(m, TRAITS[test].units.demand_field)
    return getattr(m, name)


def summarize(
    test: TestName,
    iterations: Sequence[Metrics],
    histograms: Sequence[dict[int, int]],
    percentiles: Sequence[float] = (),
) -> Metrics:
    """One Metrics for several iterations: means of every figure, latency from all histograms merged."""
    if len(iterations) == 1:
        return iterations[0]
    values: dict = {}
    for f in dataclasses.fields(Metrics):
        column = [getattr(m, f.name) for m in iterations]
        if f.name == "flows":
            values["flows"] = tuple(
                FlowMetrics(flow=i, rate=statistics.fmean(fl.rate for fl in flows))
                for i, flows in enumerate(zip(*column, strict=True))
            )
        elif all(isinstance(v, int | float) for v in column):
            values[f.name] = statistics.fmean(column)
        else:
            values[f.name] = None
    if TRAITS[test].latency:
        merged = histogram.merge(histograms)
        values |= latency_fields(merged) | {"latency_percentiles_us": asked_percentiles(merged, percentiles)}
    return Metrics(**values)


def confidence(cfg: TestConfig, iterations: Sequence[Metrics]) -> Confidence:
    """netperf's -I verdict over the iterations so far, for the headline rate and CPU utilisation."""
    intervals = []
    for key in (rate_key(cfg.test), "cpu_util_pct"):
        ci = confidence_interval([getattr(m, key) for m in iterations], cfg.confidence_level_pct)
        intervals.append(
            MetricInterval(metric=key, mean=ci.mean, half_width=ci.half_width, met=ci.within(cfg.confidence_width_pct))
        )
    return Confidence(
        level_pct=cfg.confidence_level_pct, width_pct=cfg.confidence_width_pct, intervals=tuple(intervals)
    )


def flow_rates(
    test: TestName, flows: int, a: Sample, b: Sample, names: Sequence[str], bidir: bool = False
) -> list[float]:
    """Each flow's rate (the test's units) between samples ``a`` and ``b``, its counters found by ``names``."""
    scale = 8 / 1e6 if TRAITS[test].stream else 1.0
    dt = b.t_s - a.t_s
    indexes = (names.index(f"flow{f}.{w.role}.{SLOTS[w.slot]}") for f, w in enumerate(_work(test, flows, bidir)))
    return [(b.counters[i] - a.counters[i]) * scale / dt if dt > 0 else 0.0 for i in indexes]


def series(
    test: TestName, flows: int, samples: Sequence[Sample], names: Sequence[str], bidir: bool = False
) -> list[dict[str, float]]:
    """Per sampling interval: its end, length, rate (the test's units, all flows) and CPU shares; UDP
    runs that measured jitter also its mean over the interval's packets (``jitter_us``).

    Counters are found by their ``names`` (a sample's counter_names), so files
    written with another counter layout give the same series.
    """
    out = []
    for a, b in zip(samples, samples[1:], strict=False):
        dt = b.t_s - a.t_s
        used = cpu.delta(a.cpu, b.cpu, dt)
        interval = {
            "t_s": b.t_s,
            "dt_s": dt,
            "rate": sum(flow_rates(test, flows, a, b, names, bidir)),
            "cpu_util_pct": used.util_pct,
            "softirq_pct": used.softirq_pct,
        }
        jitter = jitter_us(test, flows, a, b, names)
        out.append(interval if jitter is None else interval | {"jitter_us": jitter})
    return out
