"""One MTU on every device of a built topology (``--sweep mtu=...``), set through the builder's netlink
socket of each device's own namespace.

Every device of the topology is set, not only those the endpoints' addresses sit on: the traffic
crosses all of them (a veth's peer, a bridge, its ports), and a path whose devices disagree would
measure fragmentation or PMTU discovery instead of the MTU. A veth's peer is a device of its own in
the topology, so both ends always match. Parents go before the devices stacked on them: a macvlan or
vxlan may not exceed its lower device, and lowering a lower device lowers them along with it, so one
pass in that order works upwards and downwards. (A vxlan adds 50 bytes of headers, so it refuses
its underlay's MTU: a sweep over an overlay reports that value as refused.) A topology without devices
sets ``lo`` in each namespace. Nothing is restored: the namespaces die at teardown.
"""

from __future__ import annotations

import errno
import os

from pyroute2.netlink.exceptions import NetlinkError

from vdevperf.errors import TopologyError
from vdevperf.model import DeviceSpec
from vdevperf.topology.builder import Topology


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


def _index(topology: Topology, netns: str, device: int | str) -> int:
    if isinstance(device, int):
        return device
    return int(topology.ipr(netns).link_lookup(ifname=device)[0])


def set_mtu(topology: Topology, mtu: int) -> dict[str, int]:
    """Set ``mtu`` on every device; what each then reports (kernel's read-back), by device name.

    MtuRefused naming the first device that refused and the kernel's reason.
    """
    for netns, name, device in _targets(topology):
        try:
            topology.ipr(netns).link("set", index=_index(topology, netns, device), mtu=mtu)
        except NetlinkError as exc:
            reason = os.strerror(exc.code) if exc.code else str(exc)
            hint = " (above what it or its lower device allows)" if exc.code == errno.EINVAL else ""
            raise MtuRefused(topology.what, f"device '{name}' refused MTU {mtu}: {reason}{hint}") from exc
    return read_mtu(topology)


def read_mtu(topology: Topology) -> dict[str, int]:
    """The MTU every device reports now, by device name."""
    found = {}
    for netns, name, device in _targets(topology):
        (link,) = topology.ipr(netns).get_links(_index(topology, netns, device))
        found[name] = int(link.get("IFLA_MTU"))
    return found
