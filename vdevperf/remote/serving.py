"""The server's half of one remote test: data sockets, server endpoint processes, readings, stop.

The same pieces as a local run (load.runner): one server socket and one
forked endpoint per flow, the Watch that reads counters and CPU times, and
the test's stop order. What differs is who may connect (admission.py) and
who asks for readings: the client, through the session, at the instants it
samples its own side.
"""

from __future__ import annotations

import secrets
import socket
import time

from vdevperf.counters import ROLES, SLOTS, endpoint_index
from vdevperf.load import endpoint, runner
from vdevperf.load.endpoint import Counters, Endpoint
from vdevperf.load.tests import TESTS
from vdevperf.model import TestConfig
from vdevperf.remote import admission
from vdevperf.remote.protocol import DATA_TOKEN_BYTES, RemoteError


class ServerRun:
    """One test's server endpoints for one session; ``close`` kills whatever still runs, by PID."""

    def __init__(self, cfg: TestConfig, address: str, peer: str, netns_path: str | None) -> None:
        self.cfg = cfg
        self.tdef = TESTS[cfg.test]
        self.side = runner.Side(netns_path=netns_path, address=address, cpu=cfg.server_cpu)
        self.peer = peer
        # No latency histograms here: RR latency is timed at the client.
        self.shared = Counters(cfg.flows * len(ROLES), 0)
        self.endpoints: dict[int, Endpoint] = {}
        self.watch: runner.Watch | None = None
        self._socks: list[socket.socket] = []

    def open(self) -> tuple[list[int], bytes]:
        """Open a data socket and fork an endpoint per flow; returns their ports and the data token."""
        family = socket.AF_INET if self.cfg.ip_version == 4 else socket.AF_INET6
        token = secrets.token_bytes(DATA_TOKEN_BYTES)
        admit = admission.admitter(self.tdef.traits.per_connection, token, runner.SETUP_TIMEOUT_S)
        for _ in range(self.cfg.flows):
            sock = runner.server_socket(self.tdef, self.side, family, self.cfg)
            self._socks.append(sock)
            try:
                admission.peer_filter(sock, self.peer)
            except PermissionError:
                # Some kernels allow filters on TCP sockets only with CAP_NET_ADMIN. The data
                # token still admits a connection; a test with none has nothing else to go by.
                if self.tdef.traits.per_connection:
                    raise RemoteError(
                        "refused",
                        f"{self.cfg.test} needs CAP_NET_ADMIN on the server host: its "
                        "connections are admitted by a socket filter, which this kernel "
                        "allows only with it",
                        code="load",
                    ) from None
        for flow, sock in enumerate(self._socks):
            index = endpoint_index(flow, "server")
            self.endpoints[index] = endpoint.start(
                "server",
                self.side.netns_path,
                self.side.cpu,
                runner.server_role(self.tdef, sock, self.cfg, self.shared, index, admit),
                keep_fds=(sock.fileno(),),
            )
        ports = [sock.getsockname()[1] for sock in self._socks]
        for sock in self._socks:
            sock.close()  # the endpoints have their own copies
        return ports, token

    def start(self) -> list[dict]:
        """Wait until every endpoint admitted its client and is ready, then release them all."""
        deadline = time.monotonic() + runner.SETUP_TIMEOUT_S
        ready = [(self.endpoints[i].pid, self.endpoints[i].receive(deadline)) for i in sorted(self.endpoints)]
        self.watch = runner.Watch(self.shared, self.endpoints)
        for ep in self.endpoints.values():
            ep.go()
        return [{"pid": pid, "placement": message["placement"], "socket": message["socket"]} for pid, message in ready]

    def mark(self) -> dict:
        """This host's clock, per-CPU times, and per flow its endpoint's counters and CPU seconds."""
        now = time.monotonic()
        counters, machine, proc_cpu = self.watch.read()
        per_flow = [counters[i * len(SLOTS) : (i + 1) * len(SLOTS)] for i in sorted(self.endpoints)]
        # /proc/stat counts in 10 ms ticks: two decimals lose nothing and keep the message short.
        return {
            "t_s": now,
            "cpu": [[round(v, 2) for v in row] for row in machine],
            "counters": per_flow,
            "proc_cpu_s": proc_cpu,
        }

    def stop(self) -> list[dict]:
        """End the endpoints as the test prescribes; per flow where it ran and its final counters."""
        ordered = [self.endpoints[i] for i in sorted(self.endpoints)]
        runner.finish(ordered, self.tdef)
        final = self.shared.read()
        observed = self.watch.observed if self.watch is not None else {}
        return [
            {
                "observed_cpus": {str(cpu): n for cpu, n in sorted(observed.get(i, {}).items())},
                "final_counters": dict(zip(SLOTS, final[i * len(SLOTS) : (i + 1) * len(SLOTS)], strict=True)),
            }
            for i in sorted(self.endpoints)
        ]

    def close(self) -> None:
        """Kill and reap every endpoint that still runs, and close the sockets."""
        for sock in self._socks:
            sock.close()
        for ep in self.endpoints.values():
            ep.close()
