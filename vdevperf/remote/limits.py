"""What a vdevperf server shares between its connections: handshake slots, back-off, endpoint budget.

Strangers (connections that have not authenticated) are counted per
address: an IPv4 address, or an IPv6 /64, the block one host usually holds.
The handshake slots are capped per address and in total, and a new
connection that finds a cap full takes the slot of the OLDEST pending
handshake (of its address, or of all): a real client's handshake takes a
round trip or two, so filling the slots with idle connections only evicts
the filler, and to keep a client out a flood would have to open more
connections than the cap within each of its handshakes. A failed
authentication puts its address in back-off: a delay that doubles with each
further failure, during which its new connections are turned away.
Authenticated sessions share one budget of endpoint processes.

Everything here is thread-safe and takes the time from its caller, so it is
tested without a network (tests/unit/test_remote_limits.py).
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from vdevperf.remote.admission import normalized

Item = TypeVar("Item")

# Back-off after the n-th failure in a row: initial * 2^(n-1), at most this many times the initial.
BACKOFF_GROWTH_MAX = 64
# Addresses remembered for back-off; past this, those whose back-off ended first are forgotten.
BACKOFF_ENTRIES = 4096


def address_key(address: str) -> str:
    """The unit strangers are counted in: an IPv4 address, or the /64 of an IPv6 one."""
    ip = ipaddress.ip_address(normalized(address).split("%", 1)[0])
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class HandshakeSlots(Generic[Item]):
    """Pending handshakes, oldest first, at most ``total`` and ``per_address`` of each address."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self._items: OrderedDict[Item, str] = OrderedDict()
        self._per_key: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def take(self, item: Item, key: str) -> list[Item]:
        """Give ``item`` (from address ``key``) a slot; returns the pending items it displaces, to drop."""
        displaced = []
        with self._lock:
            if self._per_key.get(key, 0) >= self.per_address:
                displaced.append(next(i for i, k in self._items.items() if k == key))
                self._remove(displaced[-1])
            if len(self._items) >= self.total:
                displaced.append(next(iter(self._items)))
                self._remove(displaced[-1])
            self._items[item] = key
            self._per_key[key] = self._per_key.get(key, 0) + 1
        return displaced

    def leave(self, item: Item) -> bool:
        """Free ``item``'s slot; False if it had none left (it was displaced)."""
        with self._lock:
            if item not in self._items:
                return False
            self._remove(item)
            return True

    def _remove(self, item: Item) -> None:
        key = self._items.pop(item)
        if self._per_key[key] == 1:
            del self._per_key[key]
        else:
            self._per_key[key] -= 1


@dataclass
class _Strikes:
    failures: int
    until: float


class AuthBackoff:
    """Per address: how long it must wait after failed authentications (``initial_s`` 0: never)."""

    def __init__(self, initial_s: float, entries: int = BACKOFF_ENTRIES) -> None:
        self.initial_s = initial_s
        self.max_s = initial_s * BACKOFF_GROWTH_MAX
        self.entries = entries
        self._strikes: dict[str, _Strikes] = {}
        self._lock = threading.Lock()

    def remaining(self, key: str, now: float) -> float:
        """Seconds ``key`` must still wait (0: none)."""
        with self._lock:
            strikes = self._strikes.get(key)
            return 0.0 if strikes is None else max(0.0, strikes.until - now)

    def failed(self, key: str, now: float) -> float:
        """Count a failure of ``key`` at ``now``; returns its back-off in seconds."""
        if self.initial_s <= 0:
            return 0.0
        with self._lock:
            strikes = self._strikes.get(key)
            # Quiet for as long as the longest back-off: the count starts again.
            if strikes is None or now - strikes.until > self.max_s:
                if len(self._strikes) >= self.entries:
                    del self._strikes[min(self._strikes, key=lambda k: self._strikes[k].until)]
                strikes = self._strikes[key] = _Strikes(0, now)
            strikes.failures += 1
            delay = min(self.initial_s * 2 ** (strikes.failures - 1), self.max_s)
            strikes.until = now + delay
            return delay

    def succeeded(self, key: str) -> None:
        """``key`` authenticated: it starts afresh."""
        with self._lock:
            self._strikes.pop(key, None)


def backing_off(wait_s: float) -> str:
    """What a connection of an address in back-off is told."""
    return f"busy: an authentication from this address failed; it may try again in {math.ceil(wait_s)} s"


class EndpointBudget:
    """Endpoint processes the whole server may run at once, claimed per test by the sessions."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def claim(self, n: int) -> bool:
        """Reserve ``n`` endpoints; False (and nothing reserved) if that would pass the limit."""
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def release(self, n: int) -> None:
        """Give back ``n`` endpoints claimed before."""
        with self._lock:
            self.used -= n


class Tally:
    """Counts a repeated event (a flood's) and says when to log it: the first at once, then at most
    once per ``every_s``, with how many happened since."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self._count = 0
        self._last = -float("inf")
        self._lock = threading.Lock()

    def add(self, now: float) -> int:
        """Count one event; returns how many to report now (0: stay quiet)."""
        with self._lock:
            self._count += 1
            if now - self._last < self.every_s:
                return 0
            count, self._count, self._last = self._count, 0, now
            return count
