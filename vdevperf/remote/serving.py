"""The server's half of one remote test: a LocalServer that admits only its client, read on request.

The same server half as a local run (load.server): one server socket and
one forked endpoint per flow, its Watch, the test's stop order. What the
remote one adds is who may connect (admission.py: a socket filter for the
client's address, and the data token each connection must announce), that
its readings carry this host's clock and CPU times, and the wire form of
what it reports.
"""

from __future__ import annotations

import secrets
import socket

from vdevperf.load.roles import SETUP_TIMEOUT_S, Side
from vdevperf.load.server import LocalServer
from vdevperf.model import TestConfig
from vdevperf.remote import admission
from vdevperf.remote.protocol import DATA_TOKEN_BYTES, RemoteError
from vdevperf.traits import TRAITS


class ServerRun:
    """One test's server endpoints for one session; ``close`` kills whatever still runs, by PID."""

    def __init__(self, cfg: TestConfig, address: str, peer: str, netns_path: str | None) -> None:
        self.cfg = cfg
        self.peer = peer
        self.token = secrets.token_bytes(DATA_TOKEN_BYTES)
        per_connection = TRAITS[cfg.test].per_connection
        self.half = LocalServer(
            Side(netns_path=netns_path, address=address, cpu=cfg.server_cpu),
            admit=admission.admitter(per_connection, self.token, SETUP_TIMEOUT_S),
            guard=self._guard,
            host_readings=True,
        )

    def _guard(self, sock: socket.socket) -> None:
        try:
            admission.peer_filter(sock, self.peer)
        except PermissionError:
            # Some kernels allow filters on TCP sockets only with CAP_NET_ADMIN. The data
            # token still admits a connection; a test with none has nothing else to go by.
            if TRAITS[self.cfg.test].per_connection:
                raise RemoteError(
                    "refused",
                    f"{self.cfg.test} needs CAP_NET_ADMIN on the server host: its "
                    "connections are admitted by a socket filter, which this kernel "
                    "allows only with it",
                    code="load",
                ) from None

    def open(self) -> tuple[list[int], bytes]:
        """Open a data socket and fork an endpoint per flow; returns their ports and the data token."""
        targets, _ = self.half.open(self.cfg)
        return [port for _, port in targets], self.token

    def start(self) -> list[dict]:
        """Wait until every endpoint admitted its client and is ready, then release them all."""
        return [ready.to_json() for ready in self.half.start()]

    def mark(self) -> dict:
        """This host's clock, per-CPU times, and per flow its endpoint's counters and CPU seconds."""
        reading = self.half.mark()()
        # /proc/stat counts in 10 ms ticks: two decimals lose nothing and keep the message short.
        return {
            "t_s": reading.t_s,
            "cpu": [[round(v, 2) for v in row] for row in reading.cpu or []],
            "counters": reading.counters,
            "proc_cpu_s": reading.proc_cpu_s,
        }

    def stop(self) -> list[dict]:
        """End the endpoints as the test prescribes; per flow where it ran and its final counters."""
        return [finished.to_json() for finished in self.half.stop()]

    def close(self) -> None:
        """Kill and reap every endpoint that still runs, and close the sockets."""
        self.half.close()
