"""The shared token of a vdevperf server and its clients, read from a file only its owner can read.

The token is the file's bytes without the trailing newline. It authenticates
both ends of every control connection (see protocol.py) and never travels.
A file that group or others may access, or a token shorter than
MIN_TOKEN_BYTES, is refused rather than used: either would make the proof
weaker than it looks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vdevperf.remote.protocol import RemoteError

MIN_TOKEN_BYTES = 16
MAX_TOKEN_BYTES = 4096
MAKE_ONE = "umask 077; openssl rand -hex 32 > FILE"


def read_token(path: Path) -> bytes:
    """The token in ``path``; RemoteError naming the file when it is missing, exposed or too short."""
    what = f"--token-file {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise RemoteError(what, f"cannot read it: {exc.strerror}") from None
    try:
        # fstat on the open file: the mode checked is the mode of the bytes read.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RemoteError(what, "is not a regular file")
        if info.st_mode & 0o077:
            raise RemoteError(what, f"is accessible to group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                                    "run chmod 600 on it")
        raw = os.read(fd, MAX_TOKEN_BYTES + 3)
    finally:
        os.close(fd)
    token = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
    if len(token) > MAX_TOKEN_BYTES:
        raise RemoteError(what, f"holds more than {MAX_TOKEN_BYTES} bytes; a token is a short secret")
    if len(token) < MIN_TOKEN_BYTES:
        raise RemoteError(what, f"holds a token of {len(token)} bytes; use at least {MIN_TOKEN_BYTES} "
                                f"(e.g. {MAKE_ONE})")
    return token
