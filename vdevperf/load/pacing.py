"""What the paced loops share: the kernel's pacing cap, a fine timer, and how far a schedule may lag.

Application pacing (``-b``, ``--rate``) keeps an absolute schedule: the k-th
send or transaction is due at ``start + k / rate``, so a late wake-up is made
up by the next sends instead of accumulating (the achieved rate stays the asked
one over the window). Sleeps end ``timerslack`` late; a paced endpoint asks the
kernel for 1 ns slack (prctl), so its sends leave close to their due times.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct

# linux/asm-generic/socket.h; Python names it only on some versions.
SO_MAX_PACING_RATE = getattr(socket, "SO_MAX_PACING_RATE", 47)
PR_SET_TIMERSLACK = 29
# A stream sender that fell behind its schedule (the path is slower than -b, or the host stalled
# it) makes up at most this much of the lag at once, so a stall is not followed by an unbounded
# line-rate burst. RR schedules are never trimmed: their latency is timed from the schedule.
MAX_STREAM_LAG_NS = 100_000_000
# A stream sender sleeps only once it is this far ahead of its schedule, so small UDP datagrams go
# out in short bursts (at most this much ahead) instead of one sleep per datagram; over a window
# of seconds the rate error this allows is below 0.01 %. iperf3's --pacing-timer does the same.
STREAM_AHEAD_NS = 200_000


def fine_timer() -> None:
    """Ask for 1 ns timer slack in this process (default 50 µs), so sleeps end when they are due."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


def cap_pacing_rate(sock: socket.socket, bits_per_s: float) -> None:
    """--fq-rate: SO_MAX_PACING_RATE on ``sock``; the kernel takes bytes/s, as a u64 since 4.20."""
    rate = max(1, round(bits_per_s / 8))
    value = struct.pack("=Q", rate) if rate >= 2**32 - 1 else struct.pack("=I", rate)
    sock.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, value)


def pacing_rate_bps(sock: socket.socket) -> float:
    """The socket's SO_MAX_PACING_RATE read back, in bits/s (~0: no cap)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, 8)
    value = struct.unpack("=Q", raw)[0] if len(raw) == 8 else struct.unpack("=I", raw[:4])[0]
    return 8.0 * value
