"""Exceptions vdevperf expects and reports in one line.

Every expected failure is a VdevperfError; ``cli.main`` prints it as
``vdevperf: <what>: <why>`` and exits 2. Anything else is a bug and keeps its
traceback. Both parts are escaped to printable text: they often quote a value
from a file or the command line, and a control character in one must neither
break the one-line promise nor reach the terminal.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\n``, ``\\u202e``)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class VdevperfError(Exception):
    """An expected failure: ``what`` names the file, flag or object, ``why`` says what is wrong."""

    def __init__(self, what: str, why: str) -> None:
        what, why = printable(what), printable(why)
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why


class TopologyError(VdevperfError):
    """A topology definition is invalid or cannot be built."""


class UnsupportedKind(TopologyError):
    """The running kernel lacks a device kind (or mode) a topology needs."""

    def __init__(self, what: str, kind: str, config: str, mode: str | None = None) -> None:
        label = f"device kind '{kind}'" if mode is None else f"device kind '{kind}' mode '{mode}'"
        super().__init__(what, f"{label} is not supported by this kernel ({config})")
        self.kind = kind
        self.mode = mode


class PrivilegeError(VdevperfError):
    """The command needs privileges (CAP_NET_ADMIN, CAP_SYS_ADMIN) it does not have."""


class LoadError(VdevperfError):
    """The load generator could not run a test (endpoint failed, no traffic)."""


class ResultError(VdevperfError):
    """A result file is unreadable, invalid, from a newer vdevperf, or cannot be written."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; raised so that every ``finally`` tears down."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


def refused(exc: ValueError) -> VdevperfError:
    """A model's ``ValueError("FIELD: why")`` (a config it refuses) as the one-line error users see."""
    what, _, why = str(exc).partition(": ")
    return VdevperfError(what, why)
