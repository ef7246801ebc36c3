"""Copies of the endpoints' data sockets in the sampling process, so it can read their TCP_INFO.

The sockets live in forked endpoint processes inside the test's namespaces;
the sampler runs in the parent. pidfd_getfd(2) (Linux 5.6) duplicates a
descriptor of another process into this one, so each reading is a single
getsockopt on a socket held here: no namespace switch, no netlink dump, and
nothing asked of the endpoint's loop. A socket this process cannot borrow
(an old kernel, no ptrace rights over the endpoint) is simply not read.

A copy keeps its socket open: closing it in the endpoint would then send no
FIN, and a peer that ends at EOF would wait forever. ``close`` must run right
after the window's closing edge, before the endpoints are finished.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Sequence
from types import TracebackType

from vdevperf.measure import tcpinfo

# pidfd_getfd's number is the same on every architecture Linux numbers system calls alike (all but alpha).
_SYS_PIDFD_GETFD = 438
_libc = ctypes.CDLL(None, use_errno=True)


def _borrow(pid: int, fd: int) -> socket.socket | None:
    """Process ``pid``'s descriptor ``fd`` as a socket of this process (close-on-exec), or None if the
    kernel will not lend it."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        copy = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)
    if copy < 0:
        return None
    try:
        return socket.socket(fileno=copy)
    except OSError:
        os.close(copy)
        return None


class Borrowed:
    """Per endpoint a copy of its data socket (None: not borrowed), read with ``read`` until ``close``."""

    def __init__(self, sources: Sequence[tuple[int, int] | None]) -> None:
        """Borrow, per endpoint, descriptor ``fd`` of process ``pid`` (``(pid, fd)``; None: nothing)."""
        self._socks: list[socket.socket | None] = []
        try:
            for source in sources:
                self._socks.append(None if source is None else _borrow(*source))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Borrowed:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def borrowed(self) -> int:
        """How many sockets are held."""
        return sum(s is not None for s in self._socks)

    def read(self) -> list[bytes | None]:
        """Per endpoint what getsockopt(TCP_INFO) returns now (None: not borrowed, or already closed)."""
        return [
            None if s is None else s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, tcpinfo.SIZE) for s in self._socks
        ]

    def close(self) -> None:
        """Give every copy back (the endpoints' own descriptors stay open); safe to call again."""
        socks, self._socks = self._socks, [None] * len(self._socks)
        for sock in socks:
            if sock is not None:
                sock.close()
