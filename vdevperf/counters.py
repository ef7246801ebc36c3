"""The counter layout every side of a run shares: which counters an endpoint keeps, and where.

Endpoints publish running totals into int64 slots (load), the sampler reads
them (measure), results name them (``flow0.server.bytes_received``) and a
remote server sends them in this order: one layout, so it lives at the bottom.
"""

from __future__ import annotations

# zerocopy_*: -Z sends whose MSG_ZEROCOPY completion said the kernel sent from our pages, or had to copy
# them after all (SO_EE_CODE_ZEROCOPY_COPIED: what loopback and veth, delivering locally, report).
# jitter_sum_ns: UDP tests' receiver (UDP_RR: client) adds its RFC 3550 jitter estimate after every packet
# (transaction), so that its growth over a window divided by the packets is the window's mean jitter.
SLOTS = (
    "bytes_sent",
    "bytes_received",
    "messages_sent",
    "messages_received",
    "transactions",
    "connections",
    "errors",
    "zerocopy_sends",
    "zerocopy_copied",
    "jitter_sum_ns",
)
(
    BYTES_SENT,
    BYTES_RECEIVED,
    MESSAGES_SENT,
    MESSAGES_RECEIVED,
    TRANSACTIONS,
    CONNECTIONS,
    ERRORS,
    ZEROCOPY_SENDS,
    ZEROCOPY_COPIED,
    JITTER_SUM_NS,
) = range(len(SLOTS))

ROLES = ("client", "server")


def endpoint_index(flow: int, role: str) -> int:
    """Position of a flow's client or server among all endpoints (and in the shared counters)."""
    return flow * len(ROLES) + ROLES.index(role)


def slot_index(flow: int, role: str, slot: int) -> int:
    """Position of one counter in a sample's flat counter list."""
    return endpoint_index(flow, role) * len(SLOTS) + slot


def counter_names(flows: int) -> list[str]:
    """Names of a sample's flat counter list, e.g. ``flow0.server.bytes_received``."""
    return [f"flow{f}.{role}.{slot}" for f in range(flows) for role in ROLES for slot in SLOTS]
