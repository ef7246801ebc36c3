"""RFC 3550's interarrival jitter (section 6.4.1, appendix A.8): the estimator the UDP loops inline.

For packets i-1 and i with transit times T (arrival minus send time),
D = T(i) - T(i-1) and J += (|D| - J) / 16: a running mean absolute deviation
of consecutive transits, forgetting with a time constant of 16 packets. Only
differences of transit times enter, so a constant offset between the
sender's and the receiver's clocks cancels, which is why one clock per host
suffices. The loops keep J in integer ns and divide by a shift (``>> 4``
floors, so J sits below the exact value by under 16 ns); this module is the
reference their tests check them against.

A run reports J averaged over its window's packets (the loops add J up after
each packet), not J at the window's end as iperf3 does: the end value averages
only the last ~16 packets, and one preemption there swings it by orders of
magnitude (measured on this machine, three UDP_RR runs alike beside a CPU
burner: 0.1, 78 and 0.2 µs at their ends), while the window's mean holds.
"""

from __future__ import annotations

from collections.abc import Iterable

# RFC 3550's gain: 1/16, "a good noise reduction ratio while maintaining a reasonable rate of convergence".
GAIN_SHIFT = 4


def step(jitter_ns: int, d_ns: int) -> int:
    """The estimate after one more packet whose transit differs by ``d_ns`` from the previous one's."""
    return jitter_ns + ((abs(d_ns) - jitter_ns) >> GAIN_SHIFT)


def estimates(transits_ns: Iterable[int]) -> list[int]:
    """J after each packet of ``transits_ns`` but the first, in arrival order, starting from 0 (the first
    packet only sets the reference transit)."""
    out: list[int] = []
    jitter = 0
    previous: int | None = None
    for transit in transits_ns:
        if previous is not None:
            jitter = step(jitter, transit - previous)
            out.append(jitter)
        previous = transit
    return out


def estimate(transits_ns: Iterable[int]) -> int:
    """J after the last packet of ``transits_ns`` (0 for fewer than two)."""
    return (estimates(transits_ns) or [0])[-1]
