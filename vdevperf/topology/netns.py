"""Named network namespaces, created and entered without forking.

A namespace is a bind mount of an nsfs inode on ``/run/netns/NAME``, exactly
as iproute2 makes them, so ``ip netns list`` shows ours. Creation unshares
the calling *thread* only and moves it back at once (a fork would cost
~12 ms per namespace). ``entered(fd)`` runs a block with the calling thread
inside a namespace: any socket (netlink included) created there stays in that
namespace after the thread returns, which is how the builder, the load
generator and the tests reach into namespaces from one process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from vdevperf.topology.naming import PREFIX

NETNS_DIR = "/run/netns"
_SELF_NS = "/proc/thread-self/ns/net"

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _oserror(call: str, target: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}", target)


def _setns(fd: int, target: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise _oserror("setns", target)


def path(name: str) -> str:
    """The bind-mount path of namespace ``name``."""
    return os.path.join(NETNS_DIR, name)


def _share_rundir() -> None:
    # Ported from iproute2: make NETNS_DIR a shared mount so that namespaces
    # mounted later propagate into other mount namespaces (e.g. systemd units
    # with PrivateMounts). If it is not a mount point yet, bind it on itself first.
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    rundir = NETNS_DIR.encode()
    bound = False
    while _libc.mount(b"", rundir, b"none", MS_SHARED | MS_REC, None) != 0:
        if bound or ctypes.get_errno() != errno.EINVAL:
            raise _oserror("mount --make-rshared", NETNS_DIR)
        if _libc.mount(rundir, rundir, b"none", MS_BIND | MS_REC, None) != 0:
            raise _oserror("mount --rbind", NETNS_DIR)
        bound = True


def _make_mountpoint(target: str, link_from: str | None) -> None:
    # A mount sits on a dentry, not an inode, so hard links of one empty file
    # serve as distinct mount points. link() allocates no inode: on ext4
    # without a journal, each new inode costs a scan past every inode deleted
    # in the last 60 s (ialloc's recently_deleted), ~0.5 ms per namespace
    # after a bulk teardown.
    if link_from is None:
        os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    else:
        os.link(link_from, target)


def create_mountpoint_source(name: str) -> str:
    """Create the empty file ``path(name)`` (not a namespace) whose hard links ``link_from`` takes; its path."""
    _share_rundir()
    target = path(name)
    os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    return target


def create(
    name: str,
    inside: Callable[[], None] | None = None,
    link_from: str | None = None,
    before_mount: Callable[[os.stat_result], None] | None = None,
) -> str:
    """Create namespace ``name`` (it must not exist) and return its path.

    ``inside``, if given, runs with the calling thread still in the new
    namespace (sockets it opens belong there); if it raises, the namespace is
    removed and the exception propagates. ``link_from``, if given, is a file
    under NETNS_DIR (create_mountpoint_source) of which the mount point is
    made a hard link instead of a new file. ``before_mount``, if given, is
    called with the new namespace's stat (its identity) before the namespace
    appears under ``name``, so that a ledger can record it first.
    """
    _share_rundir()
    target = path(name)
    orig = os.open(_SELF_NS, os.O_RDONLY)
    try:
        _make_mountpoint(target, link_from)
    except BaseException:
        os.close(orig)
        raise
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise _oserror("unshare", name)
        try:
            if before_mount is not None:
                before_mount(os.stat(_SELF_NS))
            if _libc.mount(_SELF_NS.encode(), target.encode(), b"none", MS_BIND, None) != 0:
                raise _oserror("mount", name)
            if inside is not None:
                inside()
        finally:
            _setns(orig, "original namespace")
    except BaseException:
        # The mount point is ours (O_EXCL above), mounted or not: take it away whole.
        remove(name)
        raise
    finally:
        os.close(orig)
    return target


def create_here(
    name: str, link_from: str | None = None, before_mount: Callable[[os.stat_result], None] | None = None
) -> str:
    """Move the calling thread into a new namespace for good and mount it as ``name``; return its path.

    For a process that exists to make one namespace (e.g. a forked child that
    exits next); if this raises, the caller removes what is left of ``name``.
    ``link_from`` and ``before_mount`` are as in ``create``.
    """
    _share_rundir()
    target = path(name)
    _make_mountpoint(target, link_from)
    if _libc.unshare(CLONE_NEWNET) != 0:
        raise _oserror("unshare", name)
    if before_mount is not None:
        before_mount(os.stat(_SELF_NS))
    if _libc.mount(_SELF_NS.encode(), target.encode(), b"none", MS_BIND, None) != 0:
        raise _oserror("mount", name)
    return target


def open_fd(name_or_path: str) -> int:
    """An O_RDONLY fd on a namespace, given its name or its path; the caller closes it."""
    target = name_or_path if "/" in name_or_path else path(name_or_path)
    return os.open(target, os.O_RDONLY | os.O_CLOEXEC)


def exists(name: str) -> bool:
    """True if namespace ``name`` is present under NETNS_DIR."""
    return os.path.lexists(path(name))


def unmounted(name: str) -> bool:
    """True if ``name`` is a mount point with no namespace on it: an empty regular file of
    NETNS_DIR's own file system (a namespace's nsfs file has another device)."""
    try:
        st = os.lstat(path(name))
        return stat.S_ISREG(st.st_mode) and st.st_size == 0 and st.st_dev == os.stat(NETNS_DIR).st_dev
    except OSError:
        return False


def remove(name: str) -> bool:
    """Unmount and unlink namespace ``name``; False if it was not there."""
    target = path(name)
    # MNT_DETACH: the namespace lives on while a process or fd still holds it,
    # and dies (with its links) when the last one goes.
    if _libc.umount2(target.encode(), MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        raise _oserror("umount", name)
    try:
        os.unlink(target)
    except FileNotFoundError:
        return False
    return True


def list_ours() -> list[str]:
    """Names of the namespaces under NETNS_DIR that carry our prefix, sorted."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(PREFIX + "-"))


@contextmanager
def entered(netns_fd: int) -> Iterator[None]:
    """Run the block with the calling thread in namespace ``netns_fd``, then move it back."""
    orig = os.open(_SELF_NS, os.O_RDONLY)
    try:
        _setns(netns_fd, f"fd {netns_fd}")
        try:
            yield
        finally:
            # If this fails the thread is stranded in the wrong namespace: let it raise.
            _setns(orig, "original namespace")
    finally:
        os.close(orig)


@contextmanager
def entered_path(netns_path: str | None) -> Iterator[None]:
    """Like ``entered``, given the namespace's path; None runs the block where the thread is."""
    if netns_path is None:
        yield
        return
    fd = open_fd(netns_path)
    try:
        with entered(fd):
            yield
    finally:
        os.close(fd)


def move_to(netns_path: str) -> None:
    """Move the calling thread into the namespace at ``netns_path`` for good (forked endpoints)."""
    fd = open_fd(netns_path)
    try:
        _setns(fd, netns_path)
    finally:
        os.close(fd)


def write_sysctl(key: str, value: str) -> None:
    """Write ``/proc/sys/<key>`` as the calling thread's namespace sees it (enter ours first);
    a key this kernel lacks (IPv6 disabled) is nothing to configure."""
    # /proc/sys/net resolves to the namespace of the calling thread at open time.
    try:
        with open(f"/proc/sys/{key}", "w") as f:
            f.write(value)
    except FileNotFoundError:
        pass
