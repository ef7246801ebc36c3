"""Holding SIGINT and SIGTERM while a block that must not be cut short runs.

vdevperf turns both signals into errors.Interrupted so that every ``finally``
tears down; a second signal arriving during a teardown would cut that
teardown short. Inside ``held()`` the signals stay pending and are delivered
as soon as the block is over, once everything is gone.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

TEARDOWN_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextmanager
def held(signals: Iterable[int] = TEARDOWN_SIGNALS) -> Iterator[None]:
    """Block ``signals`` in the calling thread for the duration of the block."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(signals))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
