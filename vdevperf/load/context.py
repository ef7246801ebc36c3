"""What a load loop gets: its socket, the config, and where to publish counts.

The slots are int64 words in memory shared with the parent, one set per
endpoint, in SLOTS order; the latency histogram (RR clients) likewise, in
measure.histogram's bucket layout. Loops write, the parent reads.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from vdevperf.model import TestConfig

SLOTS = ("bytes_sent", "bytes_received", "messages_sent", "messages_received", "transactions", "connections", "errors")
BYTES_SENT, BYTES_RECEIVED, MESSAGES_SENT, MESSAGES_RECEIVED, TRANSACTIONS, CONNECTIONS, ERRORS = range(len(SLOTS))


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


class StopLoad(Exception):
    """Raised inside an endpoint by SIGUSR1: the measured load is over."""


@dataclass
class LoopContext:
    """Everything a loop needs, unpacked into locals before its first iteration."""

    sock: socket.socket | None
    cfg: TestConfig
    slots: memoryview
    hist: memoryview
    # TCP_CRR client: opens one new connected socket per transaction.
    connect: Callable[[], socket.socket] | None = None
