"""One MTU on every device of a built topology (``--sweep mtu=...``), set through the builder's netlink
socket of each device's own namespace.

Every device of the topology is set, not only those the endpoints' addresses sit on: the traffic
crosses all of them (a veth's peer, a bridge, its ports), and a path whose devices disagree would
measure fragmentation or PMTU discovery instead of the MTU. A veth's peer is a device of its own in
the topology, so both ends always match. Parents go before the devices stacked on them: a macvlan or
vxlan may not exceed its lower device, and lowering a lower device lowers them along with it, so one
pass in that order works upwards and downwards. A device under a tunnel gets the MTU plus the
tunnel's headers (its kind's ``headroom``: 50 bytes under a vxlan over IPv4), so that the overlay,
where the endpoints are, carries the swept MTU whole, as an operator raising an overlay's MTU raises
the underlay's. A topology without devices sets ``lo`` in each namespace. Nothing is restored: the
namespaces die at teardown.
"""

from __future__ import annotations

import errno
import os

from pyroute2.netlink.exceptions import NetlinkError

from vdevperf.errors import TopologyError
from vdevperf.model import DeviceSpec
from vdevperf.topology.builder import Topology
from vdevperf.topology.kinds import kind_of


class MtuRefused(TopologyError):
    """A device would not take the MTU; ``why`` is the one-line reason for the value's row."""


def _depth(topology: Topology, dev: DeviceSpec) -> int:
    return 0 if dev.parent is None else 1 + _depth(topology, topology.spec.device(dev.parent))


def _targets(topology: Topology) -> list[tuple[str, str, int | str]]:
    """(namespace, name for messages, index or ifname) of every device, parents first."""
    devices = sorted(topology.spec.devices, key=lambda d: _depth(topology, d))
    if devices:
        return [(d.netns, d.name, topology.index(d.name)) for d in devices]
    return [(ns, f"lo ({ns})", "lo") for ns in topology.spec.namespaces]


def _wanted(topology: Topology, name: str, mtu: int) -> int:
    """The MTU device ``name`` needs for ``mtu`` on the devices at the top: the largest of what each
    device stacked on it needs, plus that device's headers (0 for macvlan and the like)."""
    above = [d for d in topology.spec.devices if d.parent == name]
    return max((_wanted(topology, d.name, mtu) + kind_of(d).headroom(d) for d in above), default=mtu)


def _index(topology: Topology, netns: str, device: int | str) -> int:
    if isinstance(device, int):
        return device
    return int(topology.ipr(netns).link_lookup(ifname=device)[0])


def set_mtu(topology: Topology, mtu: int) -> dict[str, int]:
    """Set ``mtu`` on every device; what each then reports (kernel's read-back), by device name.

    MtuRefused naming the first device that refused and the kernel's reason.
    """
    for netns, name, device in _targets(topology):
        wanted = _wanted(topology, name, mtu) if isinstance(device, int) else mtu
        try:
            topology.ipr(netns).link("set", index=_index(topology, netns, device), mtu=wanted)
        except NetlinkError as exc:
            reason = os.strerror(exc.code) if exc.code else str(exc)
            hint = " (above what it or its lower device allows)" if exc.code == errno.EINVAL else ""
            carried = f" (MTU {mtu} and the headers of the tunnel on it)" if wanted != mtu else ""
            raise MtuRefused(topology.what, f"device '{name}' refused MTU {wanted}{carried}: {reason}{hint}") from exc
    return read_mtu(topology)


def read_mtu(topology: Topology) -> dict[str, int]:
    """The MTU every device reports now, by device name."""
    found = {}
    for netns, name, device in _targets(topology):
        (link,) = topology.ipr(netns).get_links(_index(topology, netns, device))
        found[name] = int(link.get("IFLA_MTU"))
    return found
