"""TCP_INFO of a flow's connection: ``struct tcp_info`` (linux/tcp.h) decoded, and what a window derives from it.

The sampler keeps what getsockopt(TCP_INFO) returned as bytes (one system
call per endpoint, nothing decoded while the load runs); the readings are
decoded afterwards, field by field at its offset in the kernel's struct. A
kernel returns as much of the struct as it has, and older kernels have less
of it: a field that lies past the end of what it returned is None, as is a
64-bit value that is all ones (the kernel's "unlimited", e.g. the pacing rate
of a socket that has no RTT sample yet).

iperf3 reports the sender's retransmits per interval from ``tcpi_total_retrans``
(segments retransmitted over the connection's life); a window's retransmits
here are its growth between the window's edges, summed over the flows' senders.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vdevperf.counters import ROLES, endpoint_index
from vdevperf.measure.sample import Sample
from vdevperf.traits import TRAITS, Traits, flow_test

# getsockopt buffer: more than any kernel's struct tcp_info (232 bytes in 6.x headers); it returns its own size.
SIZE = 256
_ALL_ONES = 2**64 - 1


@dataclass(frozen=True)
class TcpInfo:
    """One reading of a connection, in the kernel's units; None: this kernel's struct has no such field."""

    # tcpi_retransmits: retransmission timeouts in a row, not yet recovered (0 on a healthy flow).
    retransmits: int | None = None
    # tcpi_total_retrans: segments retransmitted since the connection opened (iperf3's "Retr").
    total_retrans: int | None = None
    # tcpi_lost: segments deemed lost and not yet retransmitted; tcpi_retrans: retransmitted, unacknowledged.
    lost: int | None = None
    retrans: int | None = None
    # Congestion window and slow-start threshold in segments of snd_mss bytes.
    snd_cwnd: int | None = None
    snd_ssthresh: int | None = None
    snd_mss: int | None = None
    # Smoothed RTT, its mean deviation, and the minimum RTT seen, in µs.
    rtt_us: int | None = None
    rttvar_us: int | None = None
    min_rtt_us: int | None = None
    # Rates in bytes/s: what TCP paces at, and what it measured delivered (a lower bound when app-limited).
    pacing_rate_bytes_per_s: int | None = None
    delivery_rate_bytes_per_s: int | None = None
    delivery_rate_app_limited: bool | None = None
    bytes_sent: int | None = None
    bytes_acked: int | None = None
    bytes_received: int | None = None
    bytes_retrans: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The reading as a result file stores it (every field, null where the kernel has none)."""
        return dataclasses.asdict(self)


# Each field's offset and struct format in struct tcp_info (linux/tcp.h), native byte order.
_LAYOUT: dict[str, tuple[int, str]] = {
    "retransmits": (2, "B"),
    "snd_mss": (16, "I"),
    "lost": (32, "I"),
    "retrans": (36, "I"),
    "rtt_us": (68, "I"),
    "rttvar_us": (72, "I"),
    "snd_ssthresh": (76, "I"),
    "snd_cwnd": (80, "I"),
    "total_retrans": (100, "I"),
    "pacing_rate_bytes_per_s": (104, "Q"),
    "bytes_acked": (120, "Q"),
    "bytes_received": (128, "Q"),
    "min_rtt_us": (148, "I"),
    "delivery_rate_bytes_per_s": (160, "Q"),
    "bytes_sent": (200, "Q"),
    "bytes_retrans": (208, "Q"),
}
# The byte of bitfields after tcpi_options: tcpi_delivery_rate_app_limited is its lowest bit.
_APP_LIMITED_BYTE = 7
_FIELDS = tuple((name, struct.Struct("=" + fmt), offset) for name, (offset, fmt) in _LAYOUT.items())


def parse(data: bytes) -> TcpInfo:
    """Decode what getsockopt(TCP_INFO) returned; fields past its end are None."""
    values: dict[str, Any] = {}
    for name, shape, offset in _FIELDS:
        if offset + shape.size <= len(data):
            (value,) = shape.unpack_from(data, offset)
            values[name] = None if value == _ALL_ONES else value
    if _APP_LIMITED_BYTE < len(data) and "delivery_rate_bytes_per_s" in values:
        values["delivery_rate_app_limited"] = bool(data[_APP_LIMITED_BYTE] & 1)
    return TcpInfo(**values)


def _delta(first: bytes | None, last: bytes | None) -> int | None:
    if first is None or last is None:
        return None
    a, b = parse(first).total_retrans, parse(last).total_retrans
    return None if a is None or b is None else b - a


def retransmits(
    traits: Traits,
    flows: int,
    first: Sequence[bytes | None] | None,
    last: Sequence[bytes | None] | None,
    bidir: bool = False,
) -> int | None:
    """Segments the flows' senders retransmitted between two samples' readings (endpoint order); None if
    the test reads no TCP_INFO or a sender's was not read (the server half on another host). With
    --bidir each flow's sender is its own test's (flow_test)."""
    if not traits.tcp_info or first is None or last is None:
        return None
    total = 0
    for flow in range(flows):
        for role in TRAITS[flow_test(traits.name, flows, bidir, flow)].senders:
            at = endpoint_index(flow, role)
            delta = _delta(first[at], last[at])
            if delta is None:
                return None
            total += delta
    return total


def to_json(samples: Sequence[Sample], flows: int) -> list[dict[str, Any]] | None:
    """Per flow and role, the readings of the window in order, each with its time and whether it was taken
    at an edge (``start``, ``end``) or an interval (null); a role whose socket was not read is null.
    None if the samples hold no TCP_INFO."""
    if not samples or any(s.tcp_info is None for s in samples):
        return None
    edges = {0: "start", len(samples) - 1: "end"}
    out = []
    for flow in range(flows):
        doc: dict[str, Any] = {}
        for role in ROLES:
            at = endpoint_index(flow, role)
            raw = [s.tcp_info[at] if s.tcp_info is not None else None for s in samples]
            doc[role] = (
                None
                if any(r is None for r in raw)
                else [
                    {"t_s": s.t_s, "edge": edges.get(n), **parse(r).to_json()}
                    for n, (s, r) in enumerate(zip(samples, raw, strict=True))
                    if r is not None
                ]
            )
        out.append(doc)
    return out
