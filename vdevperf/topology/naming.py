"""Run ids and the names of everything a run creates.

Naming scheme (every name is derived from the prefix, the run id and a role,
so that cleanup can tell our objects from anyone else's, and each run's
objects from another run's):

- run id: 4 random lowercase hex digits, e.g. ``3f0a``, chosen so that it
  collides with no ledger and no namespace already present;
- namespace: ``vdp-{rid}-{ns}``, e.g. ``vdp-3f0a-cli``, where ``ns`` is the
  short namespace name of the topology (at most 6 characters), so at most 15;
- interface: ``vdp{rid}{dev}``, e.g. ``vdp3f0ac0``, where ``dev`` is the short
  device name of the topology (at most 8 characters), so at most 15, the
  kernel's limit (IFNAMSIZ 16 including the NUL);
- ledger: ``/run/vdevperf/ledger/{rid}.json`` (see ledger.py).

Interfaces live only inside the run's namespaces, so an interface name need
only be unique per namespace; the run id in it still tells a reader of
``ip -all netns exec ip link`` which run a device belongs to.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection

from vdevperf.errors import VdevperfError

PREFIX = "vdp"
RUN_ID_RE = re.compile(r"^[0-9a-f]{4}$")
_NETNS_RE = re.compile(rf"^{PREFIX}-([0-9a-f]{{4}})-([a-z][a-z0-9]{{0,5}})$")
# 65536 ids; giving up after this many draws means the id space is nearly full of leftovers.
_MAX_DRAWS = 1000


def new_run_id(taken: Collection[str] = ()) -> str:
    """A random run id that is not in ``taken``."""
    for _ in range(_MAX_DRAWS):
        rid = secrets.token_hex(2)
        if rid not in taken:
            return rid
    raise VdevperfError("run id", f"no free run id after {_MAX_DRAWS} draws; run 'vdevperf cleanup'")


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is 4 lowercase hex digits, else raise ValueError."""
    if not RUN_ID_RE.match(run_id):
        raise ValueError(f"run id '{run_id}' must be 4 lowercase hex digits")
    return run_id


def netns_name(run_id: str, short: str) -> str:
    """The namespace name of topology namespace ``short`` in run ``run_id``."""
    return f"{PREFIX}-{run_id}-{short}"


def ifname(run_id: str, dev: str) -> str:
    """The interface name of topology device ``dev`` in run ``run_id``."""
    return f"{PREFIX}{run_id}{dev}"


def parse_netns_name(name: str) -> tuple[str, str] | None:
    """(run id, short name) of one of our namespace names, or None if it is not ours."""
    match = _NETNS_RE.match(name)
    return (match.group(1), match.group(2)) if match else None
