"""The four ways of creating namespaces (and their links) that a scale run compares.

Each method creates namespaces ``indices`` of a Session, with the same end
state: the namespace; with ``--links veth`` a veth pair to the hub (namespace
end ``e0``, hub end ``h<i>``); with ``--up`` lo and both ends up; with
``--addresses`` an IPv4 address on the namespace end; with ``--bridge`` the
hub end on the hub's bridge.

- ``netlink`` (vdevperf's own): ``netns.create`` in the calling thread
  (unshare, bind mount on a hard link of one empty file, setns back: no fork,
  no new inode; netns.py says why the inode matters) and, while the thread is
  still inside, one rtnetlink batch from a socket opened there: lo up, the
  veth created *in the namespace* with its peer placed in the hub by fd, the
  address. The hub ends are then brought up (and enslaved) in one batch per
  mark from the hub's socket.
- ``ip``: one ``ip`` process per command, as seed 000's script: ``ip netns add``,
  ``ip -n HUB link add ... peer ... netns NS``, ``ip -n NS link set ... up``, ``ip -n NS addr add``.
- ``ip-batch``: per mark, one ``ip -batch`` for the ``netns add`` lines and one
  ``ip -n HUB -batch`` for the ``link add`` lines (hub end up and enslaved in
  the same line). ``ip -batch`` cannot switch namespace per line, and
  ``netns add`` inside ``ip -n`` binds the namespace in ip's private mount
  namespace, where nobody else sees it; so lo up and addresses inside each
  namespace take one ``ip -n NS -batch`` process per namespace (only with
  ``--up`` or ``--addresses``). Both ``ip`` methods make each mount point a
  new file, as iproute2 does.
- ``unshare``: a forked process per namespace, the way ``unshare --net=PATH``
  and container runtimes make one: the child unshares its network namespace,
  bind-mounts it (on a hard link, as ``netlink``), configures it from inside
  exactly as ``netlink`` does, and exits; so the fork is the only difference.
  A process, not a thread: a thread per namespace is what ``netlink`` already
  does minus the thread start, while the fork is the cost this method exists
  to show. SIGINT and SIGTERM are blocked across the fork, so a child never
  runs our handlers (or our teardown); it finishes in milliseconds and the
  parent reaps it before anything else happens.

All names are in the ledger before any of this runs (Session.open).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from functools import cache, partial

from vdevperf.errors import VdevperfError
from vdevperf.scale.model import Links, Method
from vdevperf.scale.session import Session
from vdevperf.topology import netns
from vdevperf.topology.ledger import journal_hook

_CHILD_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def create(session: Session, method: Method, indices: Sequence[int], links: Links) -> None:
    """Create namespaces ``indices`` of ``session`` (with ``links``) using ``method``."""
    _CREATORS[method](session, indices, links)


def _netlink(session: Session, indices: Sequence[int], links: Links) -> None:
    inside = session.needs_inside(links)
    for i in indices:
        session.create_netns(session.layout.ns(i), partial(session.configure_inside, i, links) if inside else None, i)
    session.configure_hub(indices, links)


def _child(session: Session, i: int, links: Links) -> int:
    """The forked child's whole life: its namespace, configured from inside. Returns an exit status."""
    try:
        name = session.layout.ns(i)
        netns.create_here(name, session.link_from(i), before_mount=journal_hook(session.ledger, name))
        if session.needs_inside(links):
            session.configure_inside(i, links)
        return 0
    except OSError as exc:
        return exc.errno if exc.errno and 0 < exc.errno < 126 else 1
    except BaseException:
        return 126


def _fork_one(session: Session, i: int, links: Links) -> None:
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _CHILD_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            status = 126
            try:
                status = _child(session, i, links)
            finally:
                os._exit(status)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        raise
    try:
        # A signal that arrived meanwhile is raised as soon as it is unblocked: reap the child first.
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        _, status = os.waitpid(pid, 0)
    except BaseException:
        # Interrupted while waiting: the child (signals blocked) finishes its namespace
        # within milliseconds; reap it so that teardown, which follows, sees that namespace.
        # The signal may also land just after waitpid returned, the child already reaped.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        why = os.strerror(code) if 0 < code < 126 else f"child exited with status {code}"
        raise VdevperfError(f"namespace {session.layout.ns(i)}", f"unshare method: {why}")


def _unshare(session: Session, indices: Sequence[int], links: Links) -> None:
    for i in indices:
        with session.creating([session.layout.ns(i)]):
            _fork_one(session, i, links)
    session.configure_hub(indices, links)


@cache
def _ip_path() -> str:
    path = shutil.which("ip")
    if path is None:
        raise VdevperfError("--method ip", "iproute2's `ip` is not installed (apt-get install -y iproute2)")
    return path


def _ip(args: Sequence[str], stdin: str | None = None) -> None:
    # Its own process group: a terminal's Ctrl-C reaches vdevperf only, which stops
    # this child by its pid (subprocess.run kills it when interrupted) and tears down.
    proc = subprocess.run([_ip_path(), *args], input=stdin, capture_output=True, text=True, process_group=0)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise VdevperfError(f"ip {' '.join(args[:4])}", lines[-1] if lines else f"exit status {proc.returncode}")


def _link_add(session: Session, i: int) -> list[str]:
    """``link add`` arguments creating namespace ``i``'s pair from the hub (hub end up there)."""
    layout, config = session.layout, session.config
    args = ["link", "add", layout.hub_end(i)]
    if config.bridge:
        args += ["master", layout.bridge]
    if config.up:
        args.append("up")
    return args + ["type", "veth", "peer", "name", layout.ns_end, "netns", layout.ns(i)]


def _inside_lines(session: Session, i: int, links: Links) -> list[str]:
    """``ip`` commands to run inside namespace ``i``: lo up, the veth end up, its address."""
    layout, config = session.layout, session.config
    lines = []
    if config.up:
        lines.append("link set lo up")
        if links is Links.VETH:
            lines.append(f"link set {layout.ns_end} up")
    if links is Links.VETH and config.addresses:
        lines.append(f"addr add {layout.address(i)} dev {layout.ns_end}")
    return lines


def _ip_loop(session: Session, indices: Sequence[int], links: Links) -> None:
    layout = session.layout
    for i in indices:
        with session.creating([layout.ns(i)]):
            _ip(["netns", "add", layout.ns(i)])
        if links is Links.VETH:
            _ip(["-n", layout.hub, *_link_add(session, i)])
        for line in _inside_lines(session, i, links):
            _ip(["-n", layout.ns(i), *line.split()])


def _ip_batch(session: Session, indices: Sequence[int], links: Links) -> None:
    layout = session.layout
    with session.creating(layout.ns(i) for i in indices):
        _ip(["-batch", "-"], "".join(f"netns add {layout.ns(i)}\n" for i in indices))
    if links is Links.VETH:
        _ip(["-n", layout.hub, "-batch", "-"], "".join(" ".join(_link_add(session, i)) + "\n" for i in indices))
    for i in indices:
        lines = _inside_lines(session, i, links)
        if lines:
            _ip(["-n", layout.ns(i), "-batch", "-"], "".join(line + "\n" for line in lines))


_CREATORS = {
    Method.NETLINK: _netlink,
    Method.IP: _ip_loop,
    Method.IP_BATCH: _ip_batch,
    Method.UNSHARE: _unshare,
}


def check_tools(methods: Sequence[Method]) -> None:
    """Raise VdevperfError now if a chosen method needs a tool that is missing."""
    if any(m in (Method.IP, Method.IP_BATCH) for m in methods):
        _ip_path()
