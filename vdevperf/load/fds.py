"""File descriptors a test needs: counted, and the soft limit raised, before anything is built.

While a test starts, vdevperf holds per flow a server socket (until its endpoint
has its copy) and, per endpoint, the two pipe ends it talks to it over and a
copy of its data socket to read TCP_INFO from (load.borrowed); every
built namespace holds an fd and a netlink socket (pyroute2's IPRoute takes 4).
With -P 256 that is over 1,000 descriptors, past the common soft limit of 1024,
and it used to surface mid-test as EMFILE. So the need is computed up front:
the soft RLIMIT_NOFILE is raised (never past the hard limit) when it falls
short, and a need beyond the hard limit is refused in one line naming -P.
"""

from __future__ import annotations

import os
import resource

from vdevperf.errors import VdevperfError

# Per flow: its server socket, two pipe ends for each of its two endpoints, and during the window
# the sampler's copies of both endpoints' sockets (load.borrowed, TCP_INFO).
PER_FLOW = 7
# Per namespace built: its fd, IPRoute's 4, and pyroute2 Ethtool's 5 while offloads are set.
PER_NAMESPACE = 10
# stdio, a pipe pair being made, the capture probe, psutil's and pyroute2's transient fds, the result file.
SPARE = 64


def open_now() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself held


def needed(flows: int, namespaces: int) -> int:
    """Descriptors open at once at the peak of a test of ``flows`` flows on ``namespaces`` namespaces."""
    return open_now() + PER_FLOW * flows + PER_NAMESPACE * namespaces + SPARE


def reserve(flows: int, namespaces: int = 0) -> None:
    """Make sure a test of ``flows`` flows on ``namespaces`` namespaces can open what it needs.

    Raises the soft RLIMIT_NOFILE when it is short, up to the hard limit; VdevperfError naming -P
    if even the hard limit is too low.
    """
    need = needed(flows, namespaces)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return
    if hard != resource.RLIM_INFINITY and need > hard:
        most = max((hard - (need - PER_FLOW * flows)) // PER_FLOW, 0)
        raise VdevperfError(
            "-P",
            f"{flows} flow(s) need about {need} open files, more than the hard limit of "
            f"{hard} (ulimit -Hn); use at most {most} flows or raise the limit",
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
