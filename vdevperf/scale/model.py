"""The typed model of ``vdevperf scale``: what to create, and what each phase measured.

Frozen dataclasses that check themselves; field names carry units (``_s``,
``_ms``, ``_us``, ``_kib``, ``_per_s``). A ValueError names the flag at fault
(``--count: ...``) so that the command can report it in one line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# Namespace short names are "n" + the index with at least 4 digits, at most 6
# characters (naming.py), so 99,999 namespaces at most.
MAX_COUNT = 99_999
# A bridge has 1024 port numbers and port 0 is reserved (BR_MAX_PORTS).
MAX_BRIDGE_PORTS = 1023
DEFAULT_SETNS_COUNTS = (1, 16, 64, 512)


class Method(enum.StrEnum):
    """How namespaces (and their links) are created."""

    NETLINK = "netlink"  # vdevperf's own: no fork, one rtnetlink batch per namespace
    IP = "ip"  # one `ip` process per command, as seed 000's script
    IP_BATCH = "ip-batch"  # `ip -batch`, one process per mark for the namespaces and for the links
    UNSHARE = "unshare"  # a forked process per namespace: unshare(CLONE_NEWNET), bind mount, exit


class Links(enum.StrEnum):
    """What each namespace is given besides its own loopback."""

    NONE = "none"
    VETH = "veth"  # a veth pair from the namespace to the hub namespace


class Phase(enum.StrEnum):
    """Parts of a scale run; memory, setns and contention share one build of N namespaces."""

    CREATE = "create"  # per method: creation marks, memory, teardown, settle
    MEMORY = "memory"  # per-namespace cost without and with a veth pair
    SETNS = "setns"  # setns latency at growing namespace counts
    CONTENTION = "contention"  # creating one namespace during a bulk teardown vs idle


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass(frozen=True)
class ScaleConfig:
    """What one ``vdevperf scale`` run creates and measures."""

    count: int = 1000
    mark: int = 250
    methods: tuple[Method, ...] = tuple(Method)
    links: Links = Links.NONE
    bridge: bool = False
    addresses: bool = False
    up: bool = False
    phases: tuple[Phase, ...] = tuple(Phase)
    setns_counts: tuple[int, ...] = DEFAULT_SETNS_COUNTS
    setns_samples: int = 2000
    settle_timeout_s: float = 30.0
    contention_baseline_samples: int = 30
    probe_interval_s: float = 0.02

    def __post_init__(self) -> None:
        _check(1 <= self.count <= MAX_COUNT, f"--count: {self.count} is not between 1 and {MAX_COUNT:,}")
        _check(self.mark >= 1, f"--mark: {self.mark} is not a whole number >= 1")
        _check(bool(self.methods), "--method: at least one method is needed")
        _check(len(set(self.methods)) == len(self.methods), "--method: a method is named twice")
        _check(bool(self.phases), "--phases: at least one phase is needed")
        needs_veth = [flag for flag, on in (("--bridge", self.bridge), ("--addresses", self.addresses)) if on]
        _check(self.links is Links.VETH or not needs_veth, f"{needs_veth[0] if needs_veth else ''}: needs --links veth")
        _check(
            not self.bridge or self.count <= MAX_BRIDGE_PORTS,
            f"--bridge: a bridge has at most {MAX_BRIDGE_PORTS} ports; --count {self.count} is too many",
        )
        _check(all(c >= 1 for c in self.setns_counts), "--setns-counts: counts must be >= 1")
        _check(self.setns_samples >= 2, "--setns-samples: at least 2 samples are needed")
        _check(self.settle_timeout_s > 0, "--settle-timeout: must be a positive number of seconds")

    @property
    def setns_levels(self) -> tuple[int, ...]:
        """Namespace counts at which setns is measured: the configured ones up to N, and N."""
        return tuple(sorted({c for c in self.setns_counts if c <= self.count} | {self.count}))

    @property
    def build_phases(self) -> bool:
        """True if the run builds N namespaces once for memory, setns or contention."""
        return any(p in self.phases for p in (Phase.MEMORY, Phase.SETNS, Phase.CONTENTION))


@dataclass(frozen=True)
class MemInfo:
    """A snapshot of the kernel's memory figures (KiB, /proc/meminfo) and live network namespaces."""

    t_s: float
    mem_available_kib: int
    slab_kib: int
    sunreclaim_kib: int
    percpu_kib: int
    netns_objects: int | None  # allocated `struct net` objects (slab net_namespace), None if unreadable


@dataclass(frozen=True)
class Mark:
    """Progress at one mark: namespaces done, and creation rates since the last mark and since the start."""

    count: int  # namespaces created so far
    elapsed_s: float
    rate_per_s: float  # since the previous mark (seed 000's figure)
    cumulative_rate_per_s: float

    def __post_init__(self) -> None:
        _check(self.count >= 1 and self.elapsed_s > 0, "a mark needs namespaces and elapsed time")


@dataclass(frozen=True)
class Settle:
    """How long the kernel took to really free what a teardown deleted (cleanup is asynchronous)."""

    timeout_s: float
    unreclaimable_s: float | None  # SUnreclaim back near the baseline: the settle time; None: timed out
    mem_available_s: float | None  # MemAvailable back near it (noisy: every process moves it)
    netns_objects_s: float | None  # `struct net` count back near it (lags: see memory.py)
    series: tuple[MemInfo, ...] = ()

    @property
    def settled(self) -> bool:
        """True if the kernel's unreclaimable slab came back before the timeout."""
        return self.unreclaimable_s is not None

    @property
    def settled_s(self) -> float | None:
        """Seconds until it came back, or None if that did not happen within the timeout."""
        return self.unreclaimable_s


@dataclass(frozen=True)
class Teardown:
    """Deleting N namespaces: the calls' time, and the kernel's time to finish."""

    namespaces: int
    total_s: float
    settle: Settle

    def __post_init__(self) -> None:
        _check(self.namespaces >= 0 and self.total_s >= 0, "a teardown needs a count and a time")

    @property
    def per_namespace_ms(self) -> float:
        """Milliseconds of teardown calls per namespace."""
        return 1000 * self.total_s / self.namespaces if self.namespaces else 0.0


def per_namespace_kib(before: MemInfo, after: MemInfo, count: int) -> tuple[float, float]:
    """(MemAvailable drop, Slab growth) per namespace between two snapshots, in KiB."""
    return ((before.mem_available_kib - after.mem_available_kib) / count, (after.slab_kib - before.slab_kib) / count)


@dataclass(frozen=True)
class CreationRun:
    """One method's creation of N namespaces, with marks, memory and the teardown that followed."""

    method: Method
    links: Links
    namespaces: int
    total_s: float
    marks: tuple[Mark, ...]
    before: MemInfo
    after: MemInfo
    teardown: Teardown | None = None

    def __post_init__(self) -> None:
        _check(self.namespaces >= 1 and self.total_s > 0, "a creation run needs namespaces and time")
        _check(not self.marks or self.marks[-1].count == self.namespaces, "the last mark is the total")

    @property
    def rate_per_s(self) -> float:
        """Namespaces created per second over the whole run."""
        return self.namespaces / self.total_s

    @property
    def memory_kib(self) -> tuple[float, float]:
        """(MemAvailable, Slab) KiB per namespace, links included."""
        return per_namespace_kib(self.before, self.after, self.namespaces)


@dataclass(frozen=True)
class MemoryCost:
    """Memory per namespace without links, and per veth pair added to each, in KiB."""

    namespaces: int
    baseline: MemInfo
    with_namespaces: MemInfo
    with_veth: MemInfo | None

    @property
    def netns_kib(self) -> tuple[float, float]:
        """(MemAvailable, Slab) KiB per namespace with only its loopback."""
        return per_namespace_kib(self.baseline, self.with_namespaces, self.namespaces)

    @property
    def veth_kib(self) -> tuple[float, float] | None:
        """(MemAvailable, Slab) KiB per veth pair (and whatever --up/--addresses/--bridge add)."""
        if self.with_veth is None:
            return None
        return per_namespace_kib(self.with_namespaces, self.with_veth, self.namespaces)


@dataclass(frozen=True)
class SetnsPoint:
    """setns latency with ``namespaces`` of ours present: into one and back, and a no-op into the current one."""

    namespaces: int
    samples: int
    round_trip_median_us: float
    round_trip_p99_us: float
    noop_median_us: float
    noop_p99_us: float

    def __post_init__(self) -> None:
        _check(self.samples >= 1, "setns needs samples")
        _check(0 < self.round_trip_median_us <= self.round_trip_p99_us, "round trip: 0 < median <= p99")
        _check(0 < self.noop_median_us <= self.noop_p99_us, "no-op: 0 < median <= p99")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of a set of latencies, in ms; the samples are kept for the JSON."""

    samples_ms: tuple[float, ...]
    median_ms: float
    p99_ms: float
    max_ms: float

    @property
    def count(self) -> int:
        """How many samples there are."""
        return len(self.samples_ms)


@dataclass(frozen=True)
class Contention:
    """Creating one namespace idle vs while a bulk teardown of N namespaces is being cleaned up."""

    namespaces: int
    idle: LatencyStats
    during: LatencyStats
    teardown: Teardown


@dataclass(frozen=True)
class ScaleResult:
    """Everything one run measured so far; phases not run (or not reached) are empty."""

    config: ScaleConfig
    run_id: str
    creation: tuple[CreationRun, ...] = ()
    memory: MemoryCost | None = None
    setns: tuple[SetnsPoint, ...] = ()
    contention: Contention | None = None
    build_teardown: Teardown | None = None
    build_total_s: float | None = None
    phases_done: tuple[str, ...] = field(default=())
