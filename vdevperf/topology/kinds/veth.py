"""veth: a pair of devices, each end in its own namespace (or both in one); what one sends, the other receives.

Both ends are declared as devices, each naming the other as its ``peer``; one
request creates the pair, with the peer end placed straight into its namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vdevperf.model import DeviceSpec
from vdevperf.topology.kinds import PEER, Kind, Request, View


class Veth(Kind):
    name = "veth"
    config = "CONFIG_VETH"
    order = 10
    keys = (PEER,)
    carrier = True
    offload_note = (
        "no hardware behind it: TSO/GSO and checksum flags only decide whether segments and checksums are "
        "made before or after the crossing; GRO is off by default (on with XDP or when set)"
    )

    def check(self, dev: DeviceSpec) -> None:
        if dev.peer is None:
            raise ValueError(f"device '{dev.name}': a veth needs a peer")

    def check_links(self, dev: DeviceSpec, devices: Mapping[str, DeviceSpec]) -> None:
        where = f"device '{dev.name}'"
        if dev.peer == dev.name:
            raise ValueError(f"{where}: a veth cannot be its own peer")
        peer = devices.get(dev.peer or "")
        if peer is None:
            raise ValueError(
                f"{where}: peer '{dev.peer}' is not a device of this topology "
                "(declare the other end as its own [[device]])"
            )
        if peer.kind != self.name:
            raise ValueError(f"{where}: peer '{peer.name}' is a {peer.kind}, not a veth")
        if peer.peer != dev.name:
            raise ValueError(f"{where}: peer '{peer.name}' does not point back (its peer is '{peer.peer}')")

    def request(self, dev: DeviceSpec, view: View) -> Request:
        # One request makes both ends; the peer goes straight into its own namespace.
        peer = view.device(dev.peer or "")
        peer_args: dict[str, Any] = {"ifname": view.ifname(peer.name)}
        if peer.netns != dev.netns:
            peer_args["net_ns_fd"] = view.netns_fd(peer.netns)
        if peer.mtu is not None:
            peer_args["mtu"] = peer.mtu
        return Request(dev.netns, self.common_args(dev, view) | {"peer": peer_args}, (dev.name, peer.name))

    def sample(self, name: str, netns: str, mode: str | None, parent: str) -> tuple[DeviceSpec, ...]:
        other = f"{name}p"
        return (
            DeviceSpec(name=name, kind=self.name, netns=netns, peer=other),
            DeviceSpec(name=other, kind=self.name, netns=netns, peer=name),
        )


KIND = Veth()
