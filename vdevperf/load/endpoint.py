"""Endpoint processes: one forked process per end of a flow, inside its namespace.

An endpoint is forked (not spawned: no interpreter start-up, and it inherits
the listening socket and the shared counters), enters its network namespace
with setns, pins itself if asked and runs a role function. It talks to the
parent over two pipes: JSON lines up (ready, done, error) and one "go" byte
down, which is the start barrier for all flows of a test.

Right after the fork the child closes every descriptor but stdin, stdout,
stderr, its two pipes and the ones its role names (its socket): a fork
copies all of the parent's, and in a vdevperf server those are the listener,
other sessions' control connections, their data sockets and their
endpoints' pipes, none of which an endpoint may hold.

The hot loops never talk to the parent: they store running totals in shared
int64 slots (an anonymous shared mmap) that the parent reads at the edges of
the measured window. A load is stopped by SIGUSR1, whose handler raises
StopLoad, so the loops need no flag checks.
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import json
import mmap
import os
import resource
import select
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vdevperf.counters import SLOTS
from vdevperf.errors import LoadError
from vdevperf.load.context import StopLoad
from vdevperf.topology import netns

# How long the endpoints of one side may take to report and exit once the load ends.
FINISH_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1
_LINE_WORDS = 8  # int64 words per 64-byte cache line
_libc = ctypes.CDLL(None, use_errno=True)


def _raise_stop(signum: int, frame: object) -> None:
    raise StopLoad


class Counters:
    """Shared int64 memory: per endpoint, its SLOTS and a latency histogram.

    Each endpoint writes only its own words and the parent only reads.
    Aligned 8-byte stores and loads are atomic on the platforms Linux runs
    vdevperf on, so no lock is needed and a read never sees a torn value.
    """

    def __init__(self, endpoints: int, hist_buckets: int) -> None:
        self.endpoints = endpoints
        self.hist_buckets = hist_buckets
        # Each endpoint's slots start on their own 64-byte cache line: a sender and a
        # receiver on two CPUs must not bounce one line between them on every call.
        self._stride = -(-len(SLOTS) // _LINE_WORDS) * _LINE_WORDS
        self._slots_words = endpoints * self._stride
        words = self._slots_words + endpoints * hist_buckets
        self._map = mmap.mmap(-1, max(1, words) * 8)
        self._view = memoryview(self._map).cast("q")

    def slots(self, index: int) -> memoryview:
        """The writable slots of endpoint ``index``."""
        return self._view[index * self._stride : index * self._stride + len(SLOTS)]

    def hist(self, index: int) -> memoryview:
        """The writable latency histogram of endpoint ``index`` (empty if none was allocated)."""
        start = self._slots_words + index * self.hist_buckets
        return self._view[start : start + self.hist_buckets]

    def read(self) -> list[int]:
        """A copy of every slot of every endpoint (not the histograms), endpoint after endpoint."""
        words = self._view[: self._slots_words].tolist()
        return [w for i in range(self.endpoints) for w in words[i * self._stride : i * self._stride + len(SLOTS)]]

    def read_hist(self, index: int) -> list[int]:
        """A copy of endpoint ``index``'s histogram."""
        return self.hist(index).tolist()


class Channel:
    """The child's side of the pipes to the parent."""

    def __init__(self, up_fd: int, go_fd: int) -> None:
        self._up = up_fd
        self._go = go_fd

    def send(self, message: dict) -> None:
        """Send one JSON message to the parent."""
        os.write(self._up, (json.dumps(message) + "\n").encode())

    def wait_go(self) -> None:
        """Block until the parent releases all endpoints at once."""
        if os.read(self._go, 1) != b"g":
            raise LoadError("endpoint", "the parent went away before the start")


RoleBody = Callable[[Channel], None]


@dataclass
class Endpoint:
    """The parent's handle on one endpoint process."""

    role: str
    pid: int
    up_fd: int
    go_fd: int
    _buffer: bytes = b""
    exit_status: int | None = None
    messages: list[dict] = field(default_factory=list)

    def receive(self, deadline: float) -> dict:
        """The next message from the endpoint, waiting until ``deadline`` (monotonic)."""
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            # poll, not select: with many flows the pipe's fd number passes select's 1024.
            poller = select.poll()
            poller.register(self.up_fd, select.POLLIN)
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise LoadError(f"{self.role} endpoint", "timed out waiting for it")
            chunk = os.read(self.up_fd, 65536)
            if not chunk:
                raise LoadError(f"{self.role} endpoint", f"exited unexpectedly ({self._reap()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        self.messages.append(message)
        if "error" in message:
            raise LoadError(f"{self.role} endpoint", message["error"])
        return message

    def go(self) -> None:
        """Release the endpoint's start barrier."""
        os.write(self.go_fd, b"g")

    def stop(self) -> None:
        """Ask the endpoint to end its load (SIGUSR1)."""
        if self.exit_status is None:
            os.kill(self.pid, signal.SIGUSR1)

    def kill(self) -> None:
        """Kill the endpoint if it still runs, and reap it."""
        if self.exit_status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()

    def close(self) -> None:
        """Kill if needed and release the pipes."""
        self.kill()
        for fd in (self.up_fd, self.go_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def _reap(self) -> str:
        if self.exit_status is None:
            _, status = os.waitpid(self.pid, 0)
            self.exit_status = status
        return f"wait status {self.exit_status}"

    def join(self, deadline: float) -> None:
        """Wait for the endpoint to exit by itself, until ``deadline``."""
        while self.exit_status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = status
                return
            if time.monotonic() > deadline:
                raise LoadError(f"{self.role} endpoint", "did not finish in time")
            time.sleep(0.005)


def _prepare_child(parent_pid: int, netns_path: str | None, cpu: int | None) -> None:
    # The parent handles SIGINT/SIGTERM and tears down; endpoints must not run
    # its handlers. A terminal's SIGINT reaches the whole group: ignore it here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, _raise_stop)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    # Die with the parent, even on kill -9 of the parent.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)
    if netns_path is not None:
        netns.move_to(netns_path)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    # The loops create no reference cycles; a collection scanning the heap inherited
    # from the parent would only add pauses to the measured load.
    gc.disable()


def _close_inherited(keep: set[int]) -> None:
    # Python objects of the parent may still name closed descriptors; the child never
    # touches them, and os._exit ends it without finalizing them.
    # Nor may a signal or a crash report write into a descriptor number reused here.
    signal.set_wakeup_fd(-1)
    faulthandler.disable()
    top = max(min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 2**31 - 1), max(keep) + 1)
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, top)  # close_range(2): one system call, however high the limit


def start(
    role: str, netns_path: str | None, cpu: int | None, body: RoleBody, keep_fds: tuple[int, ...] = ()
) -> Endpoint:
    """Fork an endpoint that runs ``body(channel)`` in ``netns_path`` pinned to ``cpu``; of the
    parent's descriptors it keeps only ``keep_fds`` (and stdin, stdout, stderr)."""
    pipes: list[int] = []
    try:
        pipes.extend(os.pipe())
        pipes.extend(os.pipe())
        up_r, up_w, go_r, go_w = pipes
        parent = os.getpid()
        pid = os.fork()
    except OSError as exc:
        for fd in pipes:
            os.close(fd)
        raise LoadError(f"{role} endpoint", f"cannot start it: {exc.strerror or exc}") from None
    if pid == 0:  # child: never returns
        code = 1
        channel = Channel(up_w, go_r)
        try:
            _close_inherited({up_w, go_r, *keep_fds})
            _prepare_child(parent, netns_path, cpu)
            body(channel)
            code = 0
        except BaseException as exc:  # report everything, then leave without cleanup handlers
            try:
                channel.send({"error": f"{type(exc).__name__}: {exc}"})
            except BaseException:
                pass
        finally:
            os._exit(code)
    os.close(up_w)
    os.close(go_r)
    return Endpoint(role=role, pid=pid, up_fd=up_r, go_fd=go_w)


def placement(cpu: int | None) -> dict:
    """What the endpoint asked for and what the kernel granted, for the result."""
    return {"requested_cpu": cpu, "affinity": sorted(os.sched_getaffinity(0))}


def finish(endpoints: Sequence[Endpoint], stop: bool) -> None:
    """End one side's endpoints: ``stop`` them (SIGUSR1) if the test stops that side, else they end at
    EOF; then wait for each one's last report and its exit, which must be clean."""
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    if stop:
        for ep in endpoints:
            ep.stop()
    for ep in endpoints:
        ep.receive(deadline)
    for ep in endpoints:
        ep.join(deadline)
        status = ep.exit_status
        if status is None or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            raise LoadError(f"{ep.role} endpoint", f"exited with wait status {status}")
