"""What each endpoint of a run reports of itself, typed: when it is ready, and after the window.

An endpoint says where it may run and what its socket's effective settings
are once it is ready (Ready); the side that ran it says on which CPUs the
sampler saw it, its final counters and how often it migrated (Finished).
Both come from this host's endpoints or from a vdevperf server's (the
``started`` and ``stopped`` messages carry Ready.to_json and Finished.to_json);
EndpointReport joins them into the result's per-endpoint record.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from vdevperf.counters import SLOTS


class NotRead(enum.Enum):
    """Migrations of an endpoint on another host: that host does not report them."""

    NOT_READ = "not read"


NOT_READ = NotRead.NOT_READ


@dataclass(frozen=True)
class SocketFacts:
    """An endpoint socket's effective settings (the kernel doubles SO_*BUF); TCP's congestion control
    and TCP_NODELAY, read back with getsockopt so that -K and -D are seen to have taken."""

    sndbuf_bytes: int
    rcvbuf_bytes: int
    congestion_control: str | None = None
    nodelay: int | None = None  # None: UDP, or a result written before -D existed

    def to_json(self) -> dict[str, Any]:
        """The ``socket`` object of a result's endpoint (no TCP options for UDP)."""
        doc: dict[str, Any] = {"sndbuf_bytes": self.sndbuf_bytes, "rcvbuf_bytes": self.rcvbuf_bytes}
        if self.congestion_control is not None:
            doc["congestion_control"] = self.congestion_control
        if self.nodelay is not None:
            doc["nodelay"] = self.nodelay
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SocketFacts:
        """The facts from their JSON object."""
        return cls(doc["sndbuf_bytes"], doc["rcvbuf_bytes"], doc.get("congestion_control"), doc.get("nodelay"))


@dataclass(frozen=True)
class Ready:
    """An endpoint that is ready: its pid, the CPU asked for and the ones allowed, its socket.

    ``data_fd``: its data socket's descriptor number in its process, which the sampler borrows to read
    TCP_INFO (load.borrowed); only for endpoints of this host, so it never travels in a message.
    ``engine``: the loop it runs, "native" or "python" (--engine, and whether its loop has a native
    version); None for an endpoint of a vdevperf server, whose ``started`` message does not carry it.
    """

    pid: int
    requested_cpu: int | None
    affinity: tuple[int, ...]
    socket: SocketFacts
    data_fd: int | None = None
    engine: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As a ``started`` message carries it."""
        return {"pid": self.pid, "placement": self._placement(), "socket": self.socket.to_json()}

    def _placement(self) -> dict[str, Any]:
        return {"requested_cpu": self.requested_cpu, "affinity": list(self.affinity)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Ready:
        """From a ``started`` message's endpoint: one on another host, whose descriptors are not ours to borrow."""
        return dataclasses.replace(cls.from_message(doc["pid"], doc), data_fd=None, engine=None)

    @classmethod
    def from_message(cls, pid: int, message: dict[str, Any]) -> Ready:
        """From endpoint ``pid``'s ready message (placement, socket, and its data socket's descriptor number)."""
        placement = message["placement"]
        return cls(
            pid,
            placement["requested_cpu"],
            tuple(placement["affinity"]),
            SocketFacts.from_json(message["socket"]),
            message.get("fd"),
            message.get("engine"),
        )


@dataclass(frozen=True)
class Finished:
    """What the side that ran an endpoint saw of it by the end of the window.

    ``observed_cpus``: CPU number -> samples that found it there; ``final_counters``: SLOTS
    order; ``migrations``: over the window (None: the kernel does not say; NOT_READ: not read).
    """

    observed_cpus: dict[int, int]
    final_counters: tuple[int, ...]
    migrations: int | None | NotRead = NOT_READ

    def to_json(self) -> dict[str, Any]:
        """As a ``stopped`` message carries it (migrations stay on the host that read them)."""
        return {"observed_cpus": self._observed(), "final_counters": self._counters()}

    def _observed(self) -> dict[str, int]:
        return {str(cpu): n for cpu, n in sorted(self.observed_cpus.items())}

    def _counters(self) -> dict[str, int]:
        return dict(zip(SLOTS, self.final_counters, strict=True))

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Finished:
        """From a ``stopped`` message's endpoint."""
        return cls(
            {int(cpu): n for cpu, n in doc["observed_cpus"].items()},
            tuple(doc["final_counters"][slot] for slot in SLOTS),
        )


@dataclass(frozen=True)
class EndpointReport:
    """One endpoint of a run: its flow and role, what it said when ready, what was seen of it."""

    flow: int
    role: str
    ready: Ready
    finished: Finished

    @property
    def migrations(self) -> int | None | NotRead:
        """How often it moved to another CPU during the window."""
        return self.finished.migrations

    def to_json(self) -> dict[str, Any]:
        """The result's record of this endpoint."""
        placement = self.ready._placement()
        if self.finished.migrations is not NOT_READ:
            placement["migrations"] = self.finished.migrations
        placement["observed_cpus"] = self.finished._observed()
        return {
            "flow": self.flow,
            "role": self.role,
            "pid": self.ready.pid,
            "placement": placement,
            "socket": self.ready.socket.to_json(),
            "final_counters": self.finished._counters(),
        } | ({} if self.ready.engine is None else {"engine": self.ready.engine})
