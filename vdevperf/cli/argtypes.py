"""argparse value types of every subcommand, in one place: one wording for each kind of bad value.

Each raises argparse.ArgumentTypeError, which the CLI's parser turns into
``vdevperf: usage: argument FLAG: <why>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from enum import Enum
from typing import TypeVar

from vdevperf.model import CC_NAME, RATE_BPS, TestName, span, within
from vdevperf.sweeps import EXAMPLES, Param, Sweep
from vdevperf.topology.offload import OffloadRequest, canonical, parse_requests

T = TypeVar("T")
E = TypeVar("E", bound=Enum)


def whole(minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number of at least ``minimum`` (and at most ``maximum``, if given)."""

    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number >= {minimum}")
        if maximum is not None and int(text) > maximum:
            raise argparse.ArgumentTypeError(f"'{text}' is more than {maximum}")
        return int(text)

    return parse


def number_in(bounds: tuple[float, float], unit: str) -> Callable[[str], float]:
    """A finite number within ``bounds`` (inclusive), stated in ``unit`` when refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not within(value, bounds):
            raise argparse.ArgumentTypeError(f"'{text}' is not a number within {span(bounds, unit)}")
        return value

    return parse


def between(low: float, high: float, what: str) -> Callable[[str], float]:
    """A number strictly between ``low`` and ``high``, called ``what`` in the message."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low < value < high:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}")
        return value

    return parse


seconds = between(0, math.inf, "a positive number of seconds")
seconds_or_zero = between(-math.ulp(0.0), math.inf, "a number of seconds, 0 or more")
percent = between(0, 100, "a percentage between 0 and 100")
fraction = between(0, 1, "a level between 0 and 1, e.g. 0.05")


def size(text: str) -> int:
    """A byte count: plain, or with K/M/G suffix (powers of 1024, as netperf's -m)."""
    scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive byte count (e.g. 128K)")
    return int(digits) * scale


def bitrate(text: str) -> float:
    """A rate in bits/s: plain, or with k/M/G/T suffix (powers of 1000, as iperf3's -b), e.g. 2G."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}.get(text[-1:].lower(), 1.0)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        value = math.nan
    if not within(value, RATE_BPS):
        raise argparse.ArgumentTypeError(f"'{text}' is not a rate within 1k-1T bits/s (e.g. 500M, 2G)")
    return value


def size_in(bounds: tuple[int, int]) -> Callable[[str], int]:
    """A byte count as ``size`` reads it, within ``bounds`` (inclusive)."""

    def parse(text: str) -> int:
        value = size(text)
        if not within(value, bounds):
            raise argparse.ArgumentTypeError(f"'{text}' is outside {span(bounds, 'bytes')}")
        return value

    return parse


def pair(kind: Callable[[str], T], name: str) -> Callable[[str], tuple[T, T]]:
    """netperf's A,B arguments; a single value applies to both."""

    def parse(text: str) -> tuple[T, T]:
        parts = text.split(",")
        if len(parts) > 2 or not all(parts):
            raise argparse.ArgumentTypeError(f"'{text}' is not {name}")
        values = [kind(p) for p in parts]
        return (values[0], values[-1])

    return parse


def members(kind: type[E], case: Callable[[str], str], noun: str = "") -> Callable[[str], tuple[E, ...]]:
    """Comma-separated values of the enum ``kind``, each put in its ``case`` first (TCP_RR, netlink)."""
    called = f"{noun} " if noun else ""

    def parse(text: str) -> tuple[E, ...]:
        values = []
        for part in text.split(","):
            try:
                values.append(kind(case(part.strip())))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"unknown {called}'{part}' (known: {', '.join(str(k.value) for k in kind)})"
                ) from None
        return tuple(values)

    return parse


tests = members(TestName, str.upper, "test")


def counts(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers of at least 1 (namespace counts)."""
    parse = whole(1)
    return tuple(parse(part.strip()) for part in text.split(","))


def percentiles(text: str) -> tuple[float, ...]:
    """Comma-separated latency percentiles, each above 0 and at most 100 (99.99 is p99.99)."""
    out = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not 0 < value <= 100:
            raise argparse.ArgumentTypeError(f"'{part.strip()}' is not a percentile above 0 and at most 100")
        out.append(value)
    return tuple(sorted(set(out)))


def cpu_number(text: str) -> int | None:
    """A CPU number, or ``none``: not pinned, where compare would pin by default."""
    if text == "none":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' is not a CPU number (or 'none')")
    return int(text)


def congestion(text: str) -> str:
    """A congestion-control name as the kernel spells it (whether it is loaded is checked before the run)."""
    if CC_NAME.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"'{text}' is not a congestion control name (a-z, 0-9, _; at most 15)")
    return text


def port(text: str) -> int:
    """A TCP port number; 0 asks for any free one."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a TCP port (0-65535)")
    return int(text)


def pattern(text: str) -> str:
    """A process name or shell glob: printable and not empty."""
    if not text or not text.isprintable():
        raise argparse.ArgumentTypeError(f"'{text}' is not a process name or pattern (printable, not empty)")
    return text


def offload(text: str) -> list[OffloadRequest]:
    """Offload settings as ``--offload`` takes them: tso=off,gro=on or c0:tso=off."""
    try:
        return parse_requests(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def features(text: str) -> list[str]:
    """Distinct offload feature names (tso,gro), in their canonical spelling."""
    try:
        names = [canonical(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"'{text}' must name distinct features, e.g. tso,gro")
    return names


def modules(text: str) -> list[str]:
    """Comma-separated kernel module names."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or not all(n.replace("_", "").replace("-", "").isalnum() for n in names):
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of module names")
    return names


def sweep(text: str) -> Sweep:
    """``PARAM=V1,V2,...`` as --sweep takes it: MTUs in bytes, sizes as ``size`` reads them (64, 1K)."""
    name, sep, listed = text.partition("=")
    try:
        param = Param(name.strip().lower())
    except ValueError:
        known = ", ".join(p.value for p in Param)
        raise argparse.ArgumentTypeError(
            f"'{text}': sweep one of {known} as PARAM=V1,V2,... (e.g. {EXAMPLES[Param.MTU]})"
        ) from None
    parts = [p.strip() for p in listed.split(",")]
    if not sep or not all(parts):
        raise argparse.ArgumentTypeError(f"'{text}': give the values as {param}=V1,V2,... (e.g. {EXAMPLES[param]})")
    if param is Param.MTU and not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"'{text}': an MTU is a whole number of bytes (e.g. {EXAMPLES[param]})")
    values = tuple(int(p) for p in parts) if param is Param.MTU else tuple(size(p) for p in parts)
    try:
        return Sweep(param, values)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
