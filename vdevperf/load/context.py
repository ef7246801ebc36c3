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
    # TCP_CRR client: where ``connect`` connects, (family, host, port), for the native loop's own connect().
    peer: tuple[int, str, int] | None = None
    # Run the native (C) version of the loop where it has one: the run's engine is "native" and the
    # C modules imported (load.roles decides; load.native finds them).
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

    def peer_address(self) -> tuple[int, str, int]:
        """The TCP_CRR client's server, (family, numeric host, port), for the native loop to connect to."""
        if self.peer is None:
            raise LoadError("load loop", "started without the server's address")
        return self.peer


# One side's loop: runs until its peer ends the load (EOF) or SIGUSR1 raises StopLoad.
Loop = Callable[[LoopContext], None]
# A loop family's loops that have a native version, each with the configs it runs natively for (a
# loop that hands some configs to a Python variant, as send_loop does -Z's, says False for those).
NativeLoops = dict[Loop, Callable[[TestConfig], bool]]
