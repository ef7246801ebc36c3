"""What a load loop gets: its socket, the config, and where to publish counts.

The slots are int64 words in memory shared with the parent, one set per
endpoint, in counters.SLOTS order; the latency histogram (RR clients) likewise,
in measure.histogram's bucket layout. Loops write, the parent reads.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from vdevperf.errors import LoadError
from vdevperf.model import TestConfig


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
    # The run's engine is "native": loops that have a C version (load/native.py) run it.
    native: bool = False

    def data_socket(self) -> socket.socket:
        """The loop's socket; every loop has one but the TCP_CRR client's."""
        if self.sock is None:
            raise LoadError("load loop", "started without its socket")
        return self.sock

    def connector(self) -> Callable[[], socket.socket]:
        """The TCP_CRR client's way to open a connection per transaction."""
        if self.connect is None:
            raise LoadError("load loop", "started without a way to connect")
        return self.connect


# One side's loop: runs until its peer ends the load (EOF) or SIGUSR1 raises StopLoad.
Loop = Callable[[LoopContext], None]
