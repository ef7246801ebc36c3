"""Sweeps: one parameter measured at several values, each value an arm judged against the first.

``--sweep size=64,1K,16K`` changes the test configuration itself: the message
size, netperf's -m/-M for stream tests and -r (request and response) for RR
tests. ``--sweep mtu=1500,9000`` changes the path instead: the MTU of every
device of the topology (topology.mtu), set before each of that value's
iterations, since the values share one built topology and interleave round
by round. Either way a run records its value in ``run.sweep`` (the result
file's optional ``sweep`` object) so that report and plot can tell the
values apart and redraw the sweep.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from vdevperf.model import MESSAGE_BYTES, RunResult, TestConfig, span, within


class Param(enum.StrEnum):
    """What a sweep varies."""

    MTU = "mtu"
    SIZE = "size"


# What the kernel takes as an interface MTU (IPv4's minimum to ETH_MAX_MTU); IPv6 needs IPV6_MIN_MTU.
MTU_BOUNDS = (68, 65535)
IPV6_MIN_MTU = 1280
_SCALES = {"K": 1024, "M": 1024**2, "G": 1024**3}


def _size_text(value: int) -> str:
    """A byte count as a user would write it: 64, 1K, 16K, 1M."""
    for suffix, scale in reversed(_SCALES.items()):
        if value % scale == 0:
            return f"{value // scale}{suffix}"
    return str(value)


@dataclass(frozen=True)
class Sweep:
    """The parameter and its values, the first being the baseline the others are judged against."""

    param: Param
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise ValueError(f"{self.param}: give at least two values (the first is the baseline)")
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"{self.param}: each value once ({self.text})")
        bounds = MTU_BOUNDS if self.param is Param.MTU else MESSAGE_BYTES
        unit = "" if self.param is Param.MTU else "bytes"
        for value in self.values:
            if not within(value, bounds):
                raise ValueError(f"{self.param} {self.value_text(value)} is outside {span(bounds, unit)}")

    @property
    def text(self) -> str:
        """The sweep as the flag spells it: ``mtu=1500,9000``."""
        return f"{self.param}={','.join(self.value_text(v) for v in self.values)}"

    def value_text(self, value: int) -> str:
        """One value as tables show it: an MTU in bytes, a size with its K/M suffix."""
        return str(value) if self.param is Param.MTU else _size_text(value)

    def label(self, value: int) -> str:
        """The arm of ``value``, as round orders and verdicts name it: ``mtu=9000``, ``size=16K``."""
        return f"{self.param}={self.value_text(value)}"

    @property
    def baseline(self) -> str:
        """The arm every other value is judged against: the first value's."""
        return self.label(self.values[0])

    def point(self, value: int) -> dict[str, object]:
        """What a run of ``value`` records in the result file (run.sweep)."""
        return {
            "param": str(self.param),
            "value": value,
            "label": self.label(value),
            "values": list(self.values),
            "baseline": self.baseline,
        }

    def config(self, cfg: TestConfig, value: int) -> TestConfig:
        """``cfg`` at ``value``: a size replaces -m/-M (stream tests) or -r (RR tests); an MTU leaves
        the test as it is. ValueError (the model's check, e.g. a UDP datagram too large) if refused."""
        if self.param is Param.MTU:
            if cfg.ip_version == 6 and value < IPV6_MIN_MTU:
                raise ValueError(f"mtu {value} is below IPv6's minimum {IPV6_MIN_MTU} (-6)")
            return cfg
        if cfg.test.traits.stream:
            return dataclasses.replace(cfg, send_size=value, recv_size=value)
        return dataclasses.replace(cfg, request_size=value, response_size=value)


# One example per parameter, for the messages of a bad --sweep.
EXAMPLES = {Param.MTU: "mtu=1500,9000,65535", Param.SIZE: "size=64,1K,16K,128K"}


def configs(sweep: Sweep, base: list[TestConfig] | tuple[TestConfig, ...]) -> list[tuple[int, list[TestConfig]]]:
    """Every value with the configs it runs, checked before anything is built (ValueError if one is refused)."""
    return [(value, [sweep.config(cfg, value) for cfg in base]) for value in sweep.values]


def label_of(point: dict[str, object] | None) -> str:
    """The arm label a stored run's sweep point names (empty outside a sweep)."""
    return "" if point is None else str(point["label"])


def arm(run: RunResult) -> str:
    """How round orders and verdicts name a sweep run's arm: topology and value (``veth mtu=9000``)."""
    return f"{run.topology} {label_of(run.sweep)}"


def baseline_arm(run: RunResult) -> str:
    """The arm a sweep run is judged against: its own topology's first value."""
    return f"{run.topology} {(run.sweep or {}).get('baseline', '')}"


def text_of(point: dict[str, object]) -> str:
    """The whole sweep a stored run belonged to, as the flag spelled it (``size=64,1K``)."""
    listed = point.get("values")
    values = [v for v in listed if isinstance(v, int)] if isinstance(listed, list) else []
    try:
        return Sweep(Param(str(point["param"])), tuple(values)).text
    except ValueError:
        return f"{point.get('param')}={','.join(str(v) for v in values)}"
