"""The shared token of a vdevperf server and its clients, read from a file only its owner can read.

The token is the file's bytes without the trailing newline. It authenticates
both ends of every control connection (see protocol.py) and never travels.
What is refused rather than used, because each would make the proof weaker
than it looks or the read unsafe:

- anything but a regular file (a FIFO or a device could block the read or
  feed it endless bytes: the file is opened non-blocking and checked with
  fstat before a byte is read), and a symbolic link (O_NOFOLLOW);
- a file owned by another user (other than root), or that group or others
  may access;
- a token with less than MIN_TOKEN_BITS bits of secret, counted as the most
  its alphabet can carry (token_bits): an upper bound, which catches short
  tokens but not guessable ones. Make it random: ``openssl rand -hex 32``.
"""

from __future__ import annotations

import errno
import os
import stat
import string
from pathlib import Path

from vdevperf.remote.protocol import RemoteError

MIN_TOKEN_BITS = 128
MAX_TOKEN_BYTES = 4096
MAKE_ONE = "umask 077; openssl rand -hex 32 > FILE"
_HEX = frozenset(string.hexdigits.encode())
_PRINTABLE = frozenset(string.printable.encode()) - frozenset(b"\t\n\r\x0b\x0c")


def token_bits(token: bytes) -> int:
    """Bits of secret ``token`` can hold at most: 4 per hex digit, 6 per other printable character
    (base64's alphabet, and less than log2(95)), 8 per byte of anything else."""
    if token and set(token) <= _HEX:
        per_symbol = 4
    elif set(token) <= _PRINTABLE:
        per_symbol = 6
    else:
        per_symbol = 8
    return per_symbol * len(token)


def check_token(token: bytes) -> None:
    """ValueError unless ``token`` is of a usable size and strength."""
    if len(token) > MAX_TOKEN_BYTES:
        raise ValueError(f"holds more than {MAX_TOKEN_BYTES} bytes; a token is a short secret")
    if token_bits(token) < MIN_TOKEN_BITS:
        raise ValueError(
            f"holds a token of at most {token_bits(token)} bits of secret ({len(token)} bytes); "
            f"use at least {MIN_TOKEN_BITS}: 32 hex digits, 22 other printable characters or 16 "
            f"random bytes (e.g. {MAKE_ONE})"
        )


def _open(path: Path, what: str) -> int:
    # O_NONBLOCK: opening a FIFO waits for a writer, and a device may wait for anything.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
    try:
        return os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and path.is_symlink():
            raise RemoteError(what, "is a symbolic link; name the file itself") from None
        raise RemoteError(what, f"cannot read it: {exc.strerror}") from None


def read_token(path: Path) -> bytes:
    """The token in ``path``; RemoteError naming the file when it is unsafe to use or too weak."""
    what = f"--token-file {path}"
    fd = _open(path, what)
    try:
        # fstat on the open file: the file checked is the file read.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RemoteError(what, "is not a regular file")
        if info.st_uid not in (os.geteuid(), 0):
            raise RemoteError(what, f"belongs to user {info.st_uid}, not to this user ({os.geteuid()}) or root")
        if info.st_mode & 0o077:
            raise RemoteError(
                what, f"is accessible to group or others (mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it"
            )
        raw = b""
        while len(raw) <= MAX_TOKEN_BYTES + 2 and (chunk := os.read(fd, MAX_TOKEN_BYTES + 3 - len(raw))):
            raw += chunk
    except OSError as exc:
        raise RemoteError(what, f"cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)
    token = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
    try:
        check_token(token)
    except ValueError as exc:
        raise RemoteError(what, str(exc)) from None
    return token
