"""A gzip-compressed cpio archive in the kernel's "newc" format, the form an initramfs takes.

Written in Python so that building the lab's initramfs needs no cpio tool
and gives the same bytes for the same inputs (owner root, mtime 0).
"""

from __future__ import annotations

import gzip
import io
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory, a regular file, a symlink or a device node."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def directory(name: str) -> Entry:
    """A directory, mode 0755."""
    return Entry(name, stat.S_IFDIR | 0o755)


def file(name: str, data: bytes, executable: bool = False) -> Entry:
    """A regular file."""
    return Entry(name, stat.S_IFREG | (0o755 if executable else 0o644), data)


def symlink(name: str, target: str) -> Entry:
    """A symbolic link to ``target``."""
    return Entry(name, stat.S_IFLNK | 0o777, target.encode())


def char_device(name: str, major: int, minor: int) -> Entry:
    """A character device node, mode 0600."""
    return Entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))


def _pad(out: io.BytesIO) -> None:
    out.write(b"\0" * (-out.tell() % 4))


def _member(out: io.BytesIO, ino: int, entry: Entry) -> None:
    name = entry.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, entry.rdev[0], entry.rdev[1], len(name), 0)
    out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
    out.write(name)
    _pad(out)
    out.write(entry.data)
    _pad(out)


def archive(entries: list[Entry]) -> bytes:
    """The gzip-compressed newc archive of ``entries`` (parents must come before children)."""
    out = io.BytesIO()
    for ino, entry in enumerate(entries, start=1):
        _member(out, ino, entry)
    _member(out, 0, Entry("TRAILER!!!", 0))
    return gzip.compress(out.getvalue(), compresslevel=6, mtime=0)
