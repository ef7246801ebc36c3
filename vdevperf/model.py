"""The typed model: what a topology is, what a test asks for, what a run measured.

Everything here is a frozen dataclass that checks its own values, so that a
value which exists is a valid one. Parsing (TOML, argv, JSON) lives elsewhere
and turns its input into these types or raises with the source named.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from vdevperf.traits import TRAITS, TestName, flow_test, reversed_flow

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Real interface names are "vdp" + run id (4) + this short name: IFNAMSIZ is 16
# bytes including the NUL, so 15 characters, so 8 are left for the short name.
DEVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
# Namespace names are "vdp-" + run id (4) + "-" + this short name, also kept to 15.
NETNS_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")


# The value of a kind-specific TOML key (topology/kinds/ declares each kind's keys and types).
OptionValue = str | int | bool


# Caps on one topology: enough for any path worth measuring, small enough that a mistaken or
# hostile file cannot exhaust namespaces, memory or descriptors (compare builds every topology at
# once, and each namespace holds an fd and a netlink socket while it exists).
MAX_NAMESPACES = 16
MAX_DEVICES = 64
MAX_ADDRESSES = 16  # per device
# Names and descriptions reach terminals, tables and CSV: printable text of bounded length.
MAX_NAME_CHARS = 64
# The load loops a run can use (--engine): the C ones (load/native.py) or the pure-Python ones.
ENGINES = ("native", "python")
MAX_DESCRIPTION_CHARS = 200


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def is_text(value: str, longest: int, shortest: int = 0) -> bool:
    """True if ``value`` is printable (no control or format characters) and of a length in bounds."""
    return shortest <= len(value) <= longest and value.isprintable()


@dataclass(frozen=True)
class DeviceSpec:
    """One network device of a topology, named by its short name."""

    name: str
    # A kind of topology/kinds/ (the parser checks it and every rule of that kind: the model sits
    # below topology and knows no kind).
    kind: str
    netns: str
    mode: str | None = None
    parent: str | None = None
    peer: str | None = None
    master: str | None = None
    mtu: int | None = None
    addresses: tuple[IPInterface, ...] = ()
    # Offload features to set on this device for a run: (short name, on?) pairs.
    offload: tuple[tuple[str, bool], ...] = ()
    # The kind's own keys beyond these fields, defaults included: (key, value) pairs.
    options: tuple[tuple[str, OptionValue], ...] = ()

    def __post_init__(self) -> None:
        _check(
            bool(DEVICE_NAME_RE.match(self.name)),
            f"device name '{self.name}' must be 1-8 lowercase letters/digits, starting with a letter",
        )
        _check(bool(NETNS_NAME_RE.match(self.netns)), f"device '{self.name}': namespace name '{self.netns}' is invalid")
        if self.mtu is not None:
            _check(68 <= self.mtu <= 65535, f"device '{self.name}': mtu {self.mtu} is out of range 68-65535")
        _check(
            len(self.addresses) <= MAX_ADDRESSES,
            f"device '{self.name}': {len(self.addresses)} addresses, at most {MAX_ADDRESSES} per device",
        )

    def option(self, key: str) -> OptionValue | None:
        """The value of the kind's own key ``key``; None if the device has none."""
        return dict(self.options).get(key)

    @property
    def ifname_suffix(self) -> str:
        """The short name as it appears at the end of the real interface name."""
        return self.name


@dataclass(frozen=True)
class EndpointSpec:
    """Where one end of the load runs: a namespace and the addresses it uses."""

    netns: str
    ipv4: ipaddress.IPv4Address | None = None
    ipv6: ipaddress.IPv6Address | None = None
    # Where peers connect instead, when a NAT stands in front of this endpoint (a server
    # published by DNAT, as Docker's -p): the endpoint itself binds ipv4/ipv6.
    published_ipv4: ipaddress.IPv4Address | None = None
    published_ipv6: ipaddress.IPv6Address | None = None

    def __post_init__(self) -> None:
        _check(
            self.ipv4 is not None or self.ipv6 is not None, f"endpoint in '{self.netns}' needs an ipv4 or ipv6 address"
        )
        for version, own, published in ((4, self.ipv4, self.published_ipv4), (6, self.ipv6, self.published_ipv6)):
            _check(
                published is None or own is not None,
                f"endpoint in '{self.netns}' publishes an IPv{version} address but has none of its own",
            )

    def address(self, family: int) -> IPAddress | None:
        """The address of this endpoint for IP version 4 or 6."""
        return self.ipv4 if family == 4 else self.ipv6

    def target(self, family: int) -> IPAddress | None:
        """The address peers connect to for IP version 4 or 6: the published one, else its own."""
        published = self.published_ipv4 if family == 4 else self.published_ipv6
        return published if published is not None else self.address(family)


@dataclass(frozen=True)
class FeatureSpec:
    """One entry of a topology feature: a route, a namespace's forwarding, a NAT rule, a redirect.

    Each feature's module (topology/features/) subclasses this with its own typed fields; every
    feature acts inside one namespace of the topology, which ``netns`` names.
    """

    feature: str
    netns: str


@dataclass(frozen=True)
class TopologySpec:
    """A whole topology: namespaces, devices, what is set up in the namespaces besides devices
    (features, in the order they are applied), and the two load endpoints."""

    name: str
    namespaces: tuple[str, ...]
    devices: tuple[DeviceSpec, ...]
    client: EndpointSpec
    server: EndpointSpec
    description: str = ""
    source: str = ""
    features: tuple[FeatureSpec, ...] = ()

    def __post_init__(self) -> None:
        _check(is_text(self.name, MAX_NAME_CHARS, 1), f"'name' must be 1-{MAX_NAME_CHARS} printable characters")
        _check(
            is_text(self.description, MAX_DESCRIPTION_CHARS),
            f"'description' must be at most {MAX_DESCRIPTION_CHARS} printable characters",
        )
        _check(
            1 <= len(self.namespaces) <= MAX_NAMESPACES,
            f"'namespaces' lists {len(self.namespaces)}; a topology has 1-{MAX_NAMESPACES}",
        )
        _check(len(self.devices) <= MAX_DEVICES, f"{len(self.devices)} devices; a topology has at most {MAX_DEVICES}")

    def device(self, name: str) -> DeviceSpec:
        """The device with this short name."""
        for dev in self.devices:
            if dev.name == name:
                return dev
        raise KeyError(name)


# Largest UDP payload per IP version (65535 minus the IP and UDP headers).
UDP_MAX_PAYLOAD = {4: 65507, 6: 65527}

# Bounds of a test's values, inclusive (README's options table gives them). A window under
# 0.1 s holds fewer than ten of /proc/stat's 10 ms ticks; a sampling interval under 50 ms costs
# the sampler several % of a CPU; warm-up and window are capped at an hour and a day so that a
# typo cannot occupy the machine for ever (and inf cannot reach time.sleep).
LENGTH_S = (0.1, 86400.0)
WARMUP_S = (0.0, 3600.0)
INTERVAL_S = (0.05, 3600.0)
# -m, -M and -r: each endpoint allocates one buffer of its largest size.
MESSAGE_BYTES = (1, 16 * 1024**2)
# Every endpoint's buffers together, so that -P times a large -m cannot exhaust memory late.
MAX_BUFFERS_BYTES = 1024**3
# -s and -S: the kernel doubles SO_SNDBUF/SO_RCVBUF into an int, so 512 MiB is the most that
# stays exact on every kernel (newer ones clamp, older ones overflow to the minimum).
SOCKBUF_BYTES = (1, 512 * 1024**2)
FLOWS = (1, 256)
# -b and --fq-rate (bits/s) and --rate (transactions/s): the offered load of a whole run, all flows together.
RATE_BPS = (1e3, 1e12)
RATE_TPS = (1.0, 1e7)
# --burst: transactions in flight at once (netperf's -b N is --burst N+1).
BURST = (1, 1024)
# UDP_STREAM: each datagram starts with the sender's clock (int64 ns) and a sequence number (uint64),
# for the receiver's RFC 3550 jitter; a smaller -m or -M carries no timestamp and measures no jitter.
UDP_TIMESTAMP_BYTES = 16
# -K: a kernel congestion-control name (TCP_CA_NAME_MAX is 16 bytes with its NUL).
CC_NAME = re.compile(r"[a-z0-9_]{1,15}")


def within(value: float, bounds: tuple[float, float]) -> bool:
    """True if ``value`` is a finite number within ``bounds`` (inclusive)."""
    return bounds[0] <= value <= bounds[1]


def span(bounds: tuple[float, float], unit: str) -> str:
    """How errors and help state a range: ``0.1-86400 s``, ``1-16M bytes``."""

    def shown(value: float) -> str:
        for suffix, scale in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
            if unit == "bytes" and value >= scale and value % scale == 0:
                return f"{value // scale:g}{suffix}"
        return f"{value:g}"

    return f"{shown(bounds[0])}-{shown(bounds[1])} {unit}"


@dataclass(frozen=True)
class TestConfig:
    """What to run: one test with its netperf-style options.

    Socket buffer sizes of None leave the kernel's defaults (and autotuning)
    alone; iterations and confidence follow netperf's -i MAX,MIN and -I LEVEL,WIDTH.
    """

    __test__ = False  # not a pytest test class

    test: TestName
    duration_s: float = 10.0
    warmup_s: float = 1.0
    send_size: int = 128 * 1024
    recv_size: int = 128 * 1024
    request_size: int = 1
    response_size: int = 1
    ip_version: int = 4
    client_cpu: int | None = None
    server_cpu: int | None = None
    interval_s: float = 1.0
    flows: int = 1
    client_sndbuf: int | None = None
    client_rcvbuf: int | None = None
    server_sndbuf: int | None = None
    server_rcvbuf: int | None = None
    iterations_max: int = 1
    iterations_min: int = 1
    confidence_level_pct: float = 99.0
    confidence_width_pct: float = 5.0
    # netperf's -K and -D: TCP_CONGESTION and TCP_NODELAY on both ends' sockets (None: the namespace's default).
    congestion_control: str | None = None
    nodelay: bool = False
    # -Z: the TCP stream sender sends with MSG_ZEROCOPY (the test's traits say whether it can).
    zerocopy: bool = False
    # Extra latency percentiles of RR tests (--percentiles), each 0 < p <= 100; () = the fixed ones only.
    latency_percentiles: tuple[float, ...] = ()
    # Offered load, all flows together, split evenly between them (None: as fast as the path goes).
    # -b: a stream test's senders pace their sends in the application (iperf3's -b), bits/s of payload.
    rate_bps: float | None = None
    # --fq-rate: a TCP stream sender's socket is capped with SO_MAX_PACING_RATE (iperf3's --fq-rate), bits/s
    # on the wire; the kernel paces (TCP's own pacing when the qdisc is not fq).
    fq_rate_bps: float | None = None
    # --rate: an RR client starts transactions on a fixed schedule, transactions/s, and times each from its
    # scheduled start (wrk2's cure for coordinated omission).
    rate_tps: float | None = None
    # --bidir: half the flows run the test's reverse (iperf3's --bidir); ``flows`` counts both halves.
    bidir: bool = False
    # --burst: TCP_RR/UDP_RR transactions the client keeps in flight at once; 1 = one at a time.
    burst: int = 1
    # --engine: which loops run the load, the C ones ("native", when they built) or the Python ones.
    engine: str = "native"

    def __post_init__(self) -> None:
        _check(self.engine in ENGINES, f"--engine: '{self.engine}' is not one of {', '.join(ENGINES)}")
        if self.bidir:
            able = ", ".join(t.name for t in TRAITS.values() if t.reverse is not None)
            shape = " (a request/response test already goes both ways)" if not self.test.is_stream else ""
            _check(self.test.traits.reverse is not None, f"--bidir: runs {able} both ways, not {self.test}{shape}")
            _check(self.flows % 2 == 0, f"--bidir: {self.flows} flows; as many each way makes an even number")
            _check(
                self.flows <= FLOWS[1],
                f"--bidir: -P {self.flows // 2} per direction makes {self.flows} flows; "
                f"at most {FLOWS[1] // 2} per direction",
            )
        _check(
            all(0 < p <= 100 for p in self.latency_percentiles), "--percentiles: each must be above 0 and at most 100"
        )
        _check(within(self.duration_s, LENGTH_S), f"-l: {self.duration_s:g} is outside {span(LENGTH_S, 's')}")
        _check(within(self.warmup_s, WARMUP_S), f"--warmup: {self.warmup_s:g} is outside {span(WARMUP_S, 's')}")
        _check(
            within(self.interval_s, INTERVAL_S), f"--interval: {self.interval_s:g} is outside {span(INTERVAL_S, 's')}"
        )
        for flag, messages in (
            ("-m/-M", (self.send_size, self.recv_size)),
            ("-r", (self.request_size, self.response_size)),
        ):
            for message in messages:
                _check(within(message, MESSAGE_BYTES), f"{flag}: {message} is outside {span(MESSAGE_BYTES, 'bytes')}")
        _check(self.ip_version in (4, 6), "-4/-6: IP version must be 4 or 6")
        _check(within(self.flows, FLOWS), f"-P: {self.flows} flows is outside {span(FLOWS, 'flows')}")
        for cpu in (self.client_cpu, self.server_cpu):
            _check(cpu is None or cpu >= 0, "-T: CPU numbers must not be negative")
        for flag, buffers in (
            ("-s", (self.client_sndbuf, self.client_rcvbuf)),
            ("-S", (self.server_sndbuf, self.server_rcvbuf)),
        ):
            for buffer in buffers:
                _check(
                    buffer is None or within(buffer, SOCKBUF_BYTES),
                    f"{flag}: {buffer} is outside {span(SOCKBUF_BYTES, 'bytes')}",
                )
        largest = max(self.send_size, self.recv_size, self.request_size, self.response_size)
        _check(
            2 * self.flows * largest <= MAX_BUFFERS_BYTES,
            f"-P/-m/-M/-r: {self.flows} flows of two endpoints with buffers of up to {largest} bytes need "
            f"{2 * self.flows * largest / 1024**2:.0f} MiB; at most {MAX_BUFFERS_BYTES // 1024**2} MiB",
        )
        _check(1 <= self.iterations_min <= self.iterations_max, "-i: need 1 <= MIN <= MAX iterations")
        _check(50 <= self.confidence_level_pct < 100, "-I: confidence level must be 50-99.9 %")
        _check(0 < self.confidence_width_pct <= 100, "-I: interval width must be 0-100 %")
        traits = self.test.traits
        _check(
            self.congestion_control is None or CC_NAME.fullmatch(self.congestion_control) is not None,
            f"-K: '{self.congestion_control}' is not a congestion control name (a-z, 0-9, _; at most 15)",
        )
        for flag, given in (("-K", self.congestion_control is not None), ("-D", self.nodelay)):
            _check(not (given and traits.udp), f"{flag}: a TCP socket option; {self.test} runs over UDP")
        able = ", ".join(t.name for t in TRAITS.values() if t.zerocopy)
        _check(not self.zerocopy or traits.zerocopy, f"-Z: MSG_ZEROCOPY sends are for {able}, not {self.test}")
        self._check_pacing()
        if traits.udp:
            limit = UDP_MAX_PAYLOAD[self.ip_version]
            sizes = (self.send_size,) if traits.stream else (self.request_size, self.response_size)
            _check(max(sizes) <= limit, f"-m/-r: a UDP message carries at most {limit} bytes over IPv{self.ip_version}")
        _check(within(self.burst, BURST), f"--burst: {self.burst} is outside {span(BURST, 'transactions')}")
        able = ", ".join(t.name for t in TRAITS.values() if t.burst)
        _check(self.burst == 1 or traits.burst, f"--burst: transactions in flight are for {able}, not {self.test}")
        _check(
            self.burst == 1 or self.rate_tps is None, "--burst: not with --rate, whose transactions go one at a time"
        )
        _check(
            self.flows * self.burst * self.response_size <= MAX_BUFFERS_BYTES,
            f"--burst/-r: {self.flows} flows of {self.burst} responses of {self.response_size} bytes in flight need "
            f"more than {MAX_BUFFERS_BYTES // 1024**2} MiB",
        )

    @property
    def measures_jitter(self) -> bool:
        """True if the run measures RFC 3550 jitter: UDP_RR always (of round trips), UDP_STREAM when
        its datagrams can carry the sender's timestamp."""
        traits = self.test.traits
        if not traits.udp:
            return False
        return not traits.stream or min(self.send_size, self.recv_size) >= UDP_TIMESTAMP_BYTES

    def _check_pacing(self) -> None:
        traits = self.test.traits
        for flag, rate, bounds, unit, kind in (
            ("-b", self.rate_bps, RATE_BPS, "bits/s", "stream"),
            ("--fq-rate", self.fq_rate_bps, RATE_BPS, "bits/s", "stream"),
            ("--rate", self.rate_tps, RATE_TPS, "transactions/s", "rr"),
        ):
            if rate is None:
                continue
            _check(within(rate, bounds), f"{flag}: {rate:g} is outside {span(bounds, unit)}")
            able = ", ".join(t.name for t in TRAITS.values() if t.pacing and t.kind == kind)
            _check(traits.pacing and traits.kind == kind, f"{flag}: paces {able}, not {self.test}")
        _check(
            self.fq_rate_bps is None or not traits.udp,
            "--fq-rate: SO_MAX_PACING_RATE paces UDP only under the fq qdisc; use -b",
        )
        _check(self.rate_bps is None or self.fq_rate_bps is None, "-b/--fq-rate: one way of pacing at a time")
        _check(self.rate_bps is None or not self.zerocopy, "-b: paces plain sends; not with -Z")

    @property
    def flow_rate_bps(self) -> float | None:
        """-b's share of one flow, in bits/s (None: unpaced)."""
        return None if self.rate_bps is None else self.rate_bps / self.flows

    @property
    def flow_rate_tps(self) -> float | None:
        """--rate's share of one flow, in transactions/s (None: unpaced)."""
        return None if self.rate_tps is None else self.rate_tps / self.flows

    @property
    def asked_rate(self) -> float | None:
        """The offered load in the test's rate units (10^6 bits/s or Trans/s), or None if unpaced."""
        bps = self.rate_bps if self.rate_bps is not None else self.fq_rate_bps
        return bps / 1e6 if bps is not None else self.rate_tps

    def flow_test(self, flow: int) -> TestName:
        """The test flow ``flow`` runs (traits.flow_test): with --bidir, the reverse for the second half."""
        return flow_test(self.test, self.flows, self.bidir, flow)

    def reversed_flow(self, flow: int) -> bool:
        """True if flow ``flow`` runs the other way (--bidir's second half)."""
        return reversed_flow(self.flows, self.bidir, flow)


@dataclass(frozen=True)
class FlowMetrics:
    """One flow's share of a run: its rate in the run's units."""

    flow: int
    rate: float


@dataclass(frozen=True)
class Metrics:
    """Derived figures of one run, netperf's units; a figure that does not apply is None.

    With several flows, rates are sums over flows and latency percentiles come
    from the merged histogram of all flows.
    """

    elapsed_s: float
    throughput_mbps: float | None
    transactions_per_s: float | None
    mean_latency_us: float | None
    cpu_util_pct: float
    softirq_pct: float
    service_demand_us_per_kb: float | None
    service_demand_us_per_tr: float | None
    min_latency_us: float | None = None
    p50_latency_us: float | None = None
    p90_latency_us: float | None = None
    p99_latency_us: float | None = None
    p99_9_latency_us: float | None = None
    max_latency_us: float | None = None
    messages_sent: float | None = None
    messages_received: float | None = None
    loss_pct: float | None = None
    send_throughput_mbps: float | None = None
    flows: tuple[FlowMetrics, ...] = ()
    min_flow_rate: float | None = None
    max_flow_rate: float | None = None
    jain_index: float | None = None
    # Where the busy CPU time went, in % of the whole machine (they sum to cpu_util_pct):
    # the client processes, the server processes, and everything else (softirq on other
    # CPUs, ksoftirqd, kworkers, other tasks).
    client_cpu_pct: float | None = None
    server_cpu_pct: float | None = None
    elsewhere_cpu_pct: float | None = None
    # What sampling cost the vdevperf process itself, in % of one CPU.
    sampler_cpu_pct: float | None = None
    # Share of all CPU time the host took from this guest during the window (left out of
    # cpu_util_pct and service demand, see measure/cpu.py).
    steal_pct: float | None = None
    # With the server half on another host (a vdevperf server), that host's figures, netperf's
    # remote CPU columns: utilisation and softirq share of all its CPUs, and its busy CPU time
    # per unit of work. The figures above are then the client host's, and server_cpu_pct is
    # the server processes' share of the server host.
    remote_cpu_util_pct: float | None = None
    remote_softirq_pct: float | None = None
    remote_service_demand_us_per_kb: float | None = None
    remote_service_demand_us_per_tr: float | None = None
    # The --percentiles of an RR run from the same merged histogram, keyed "50", "99.99" (µs); None if not asked.
    latency_percentiles_us: dict[str, float] | None = None
    # --bidir: the rate of the flows running the test itself and of those running its reverse (they sum
    # to throughput_mbps, which service demand divides by); None for a one-way run.
    forward_mbps: float | None = None
    reverse_mbps: float | None = None
    # TCP tests with one connection per flow: segments the senders retransmitted in the window (TCP_INFO's
    # total_retrans, summed over flows; iperf3's "Retr"); None where not read, a mean over iterations.
    retransmits: float | None = None
    # UDP tests: RFC 3550's interarrival jitter at the receiver, µs, its estimate after each packet averaged
    # over the window's packets of all flows (UDP_STREAM: of one-way transit times; UDP_RR: of round-trip
    # times at the client); None otherwise.
    jitter_us: float | None = None


class RunStatus(enum.StrEnum):
    """How a run ended: measured, or why there is no figure."""

    OK = "ok"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class Iteration:
    """One measured repetition of a test: its figures, the raw samples behind them, and what
    is derived from those for readers of the JSON (CPU breakdown, per-interval series)."""

    metrics: Metrics
    endpoints: list
    raw: dict
    cpu_breakdown: dict | None = None
    series: list | None = None
    capture: dict | None = None
    # The round of an interleaved comparison this iteration belongs to (0-based).
    round: int | None = None
    # What else happened in the window: steal, CPU of processes outside the test, other live
    # vdevperf runs, endpoint migrations, and the flags they raised (see bench.noise).
    noise: dict | None = None
    # Attempts measured and rejected for steal above the limit before this one (summaries).
    retries: tuple[dict, ...] = ()


@dataclass(frozen=True)
class MetricInterval:
    """The confidence interval of one metric over the iterations of a run."""

    metric: str
    mean: float
    half_width: float | None
    met: bool


@dataclass(frozen=True)
class Confidence:
    """netperf's -I verdict: were throughput and CPU utilisation within ±width/2 % at level %?"""

    level_pct: float
    width_pct: float
    intervals: tuple[MetricInterval, ...]

    @property
    def met(self) -> bool:
        """True when every tracked metric's interval is narrow enough."""
        return all(i.met for i in self.intervals)


@dataclass(frozen=True)
class RunResult:
    """One test on one topology: configuration, summary figures and every iteration behind them."""

    topology: str
    topology_source: str
    config: TestConfig
    status: RunStatus
    reason: str | None = None
    metrics: Metrics | None = None
    iterations: tuple[Iteration, ...] = ()
    confidence: Confidence | None = None
    # Offload features during the run: what was asked, what changed, the state per device.
    offload: dict | None = None
    # The vdevperf server that ran the server half: its address and what it said of itself.
    remote: dict | None = None
    # The sweep value this run measured (vdevperf.sweeps.Sweep.point): parameter, value, label, and
    # for an MTU the MTU each device reported; None outside a sweep.
    sweep: dict | None = None

    def __post_init__(self) -> None:
        if self.status is RunStatus.OK:
            _check(
                self.metrics is not None and len(self.iterations) > 0,
                "a measured run needs metrics and at least one iteration",
            )
        else:
            _check(self.reason is not None, "a run without figures needs a reason")

    @property
    def unstable(self) -> bool:
        """True when iterations were asked to converge and did not."""
        return self.confidence is not None and not self.confidence.met


__all__ = [
    "DeviceSpec",
    "FeatureSpec",
    "EndpointSpec",
    "TopologySpec",
    "TestName",
    "TestConfig",
    "FlowMetrics",
    "Metrics",
    "UDP_MAX_PAYLOAD",
    "RunStatus",
    "Iteration",
    "LENGTH_S",
    "WARMUP_S",
    "INTERVAL_S",
    "MESSAGE_BYTES",
    "MAX_BUFFERS_BYTES",
    "SOCKBUF_BYTES",
    "FLOWS",
    "RATE_BPS",
    "RATE_TPS",
    "MAX_NAMESPACES",
    "MAX_DEVICES",
    "MAX_ADDRESSES",
    "MAX_NAME_CHARS",
    "MAX_DESCRIPTION_CHARS",
    "within",
    "span",
    "is_text",
    "MetricInterval",
    "Confidence",
    "RunResult",
    "IPInterface",
    "IPAddress",
    "OptionValue",
]
