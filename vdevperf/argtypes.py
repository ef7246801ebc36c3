"""argparse value types shared by every subcommand: one wording for each kind of bad value.

Each raises argparse.ArgumentTypeError, which the CLI's parser turns into
``vdevperf: usage: argument FLAG: <why>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from vdevperf.model import span, within


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


def size_in(bounds: tuple[int, int]) -> Callable[[str], int]:
    """A byte count as ``size`` reads it, within ``bounds`` (inclusive)."""

    def parse(text: str) -> int:
        value = size(text)
        if not within(value, bounds):
            raise argparse.ArgumentTypeError(f"'{text}' is outside {span(bounds, 'bytes')}")
        return value

    return parse


def pair(kind: Callable[[str], int], name: str) -> Callable[[str], tuple[int, int]]:
    """netperf's A,B arguments; a single value applies to both."""

    def parse(text: str) -> tuple[int, int]:
        parts = text.split(",")
        if len(parts) > 2 or not all(parts):
            raise argparse.ArgumentTypeError(f"'{text}' is not {name}")
        values = [kind(p) for p in parts]
        return (values[0], values[-1])

    return parse
