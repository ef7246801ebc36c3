"""The device-kind registry: how to ask the kernel for each kind of device.

``KINDS`` maps every DeviceKind to a Kind: the kernel config option it needs
(named when the kernel says EOPNOTSUPP) and a builder that returns the keyword
arguments of pyroute2's ``IPRoute.link("add", ...)`` for one device. The
builders are pure; the caller sends the request in the right namespace
(builder.py, probe.py). Adding a kind is one builder, one KINDS entry, one
DeviceKind member and one test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vdevperf.model import DeviceKind, DeviceSpec


@dataclass(frozen=True)
class LinkContext:
    """What a request needs beyond the DeviceSpec: real names, indexes and namespace fds."""

    ifname: str
    # veth: the other end, its real name and the fd of its namespace (None: the same namespace).
    peer: DeviceSpec | None = None
    peer_ifname: str | None = None
    peer_netns_fd: int | None = None
    # stacked kinds: the parent's ifindex in the namespace the request is sent in, and the
    # fd of the namespace the new device goes to (None: stays with its parent).
    parent_index: int | None = None
    netns_fd: int | None = None


Builder = Callable[[DeviceSpec, LinkContext], dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    """One device kind: the config option it needs and its request builder."""

    config: str
    build: Builder


def _common(dev: DeviceSpec, ctx: LinkContext) -> dict[str, Any]:
    # The MTU goes in the creating request: no extra round trip per device.
    args: dict[str, Any] = {"ifname": ctx.ifname, "kind": dev.kind.value}
    if dev.mtu is not None:
        args["mtu"] = dev.mtu
    return args


def _veth(dev: DeviceSpec, ctx: LinkContext) -> dict[str, Any]:
    peer: dict[str, Any] = {"ifname": ctx.peer_ifname}
    if ctx.peer_netns_fd is not None:
        peer["net_ns_fd"] = ctx.peer_netns_fd
    if ctx.peer is not None and ctx.peer.mtu is not None:
        peer["mtu"] = ctx.peer.mtu
    return _common(dev, ctx) | {"peer": peer}


def _bridge(dev: DeviceSpec, ctx: LinkContext) -> dict[str, Any]:
    # STP off and no forward delay: ports forward as soon as they are up.
    return _common(dev, ctx) | {"br_stp_state": 0, "br_forward_delay": 0}


def _stacked(dev: DeviceSpec, ctx: LinkContext) -> dict[str, Any]:
    args = _common(dev, ctx) | {"link": ctx.parent_index}
    if ctx.netns_fd is not None:
        args["net_ns_fd"] = ctx.netns_fd
    return args


def _macvlan(dev: DeviceSpec, ctx: LinkContext) -> dict[str, Any]:
    return _stacked(dev, ctx) | {"macvlan_mode": dev.mode}


def _macvtap(dev: DeviceSpec, ctx: LinkContext) -> dict[str, Any]:
    return _stacked(dev, ctx) | {"macvtap_mode": dev.mode}


# IFLA_IPVLAN_MODE values from linux/if_link.h (enum ipvlan_mode).
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}


def _ipvlan(dev: DeviceSpec, ctx: LinkContext) -> dict[str, Any]:
    return _stacked(dev, ctx) | {"ipvlan_mode": IPVLAN_MODES[dev.mode or "l2"]}


KINDS: dict[DeviceKind, Kind] = {
    DeviceKind.VETH: Kind("CONFIG_VETH", _veth),
    DeviceKind.BRIDGE: Kind("CONFIG_BRIDGE", _bridge),
    DeviceKind.MACVLAN: Kind("CONFIG_MACVLAN", _macvlan),
    DeviceKind.MACVTAP: Kind("CONFIG_MACVTAP", _macvtap),
    DeviceKind.IPVLAN: Kind("CONFIG_IPVLAN", _ipvlan),
}
