"""vxlan: an overlay device that carries Ethernet frames in UDP over an underlay device of the topology.

Each end of the tunnel is a vxlan device on an underlay (its ``parent``: a veth or bridge
of the topology, in the same namespace), sending to the ``remote`` end's underlay address
on ``dstport``. Frames grow by 50 bytes of outer headers, so the overlay's MTU is the
underlay's minus 50 unless the underlay is raised: the cost measured is encapsulation,
the extra UDP/IP pass and the missing offloads of the inner packet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from vdevperf.model import DeviceSpec, OptionValue
from vdevperf.topology.kinds import PARENT, Key, Kind, Request, View, kind_of

VNI_MAX = 2**24 - 1
# IANA's port for VXLAN; Linux's own default (8472) predates it.
IANA_PORT = 4789


class Vxlan(Kind):
    name = "vxlan"
    config = "CONFIG_VXLAN"
    order = 60
    keys = (PARENT, Key("vni", int), Key("remote", str), Key("local", str), Key("dstport", int, IANA_PORT))
    offload_note = (
        "segments the inner packet with GSO (tx-udp_tnl-segmentation) when the underlay cannot; "
        "the receive side aggregates through GRO on the underlay before decapsulation"
    )

    def headroom(self, dev: DeviceSpec) -> int:
        # Inner Ethernet 14 + VXLAN 8 + UDP 8 + the outer IP header: 20 over IPv4, 40 over IPv6.
        return 30 + (20 if ipaddress.ip_address(str(dev.option("remote"))).version == 4 else 40)

    def check(self, dev: DeviceSpec) -> None:
        where = f"device '{dev.name}'"
        if dev.parent is None:
            raise ValueError(f"{where}: a vxlan needs a parent (its underlay device)")
        vni = dev.option("vni")
        if not isinstance(vni, int) or not 0 < vni <= VNI_MAX:
            raise ValueError(f"{where}: vni must be 1-{VNI_MAX}")
        port = dev.option("dstport")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"{where}: dstport must be 1-65535")
        addresses = []
        for key in ("remote", "local"):
            value = dev.option(key)
            try:
                addresses.append(ipaddress.ip_address(str(value)))
            except ValueError:
                raise ValueError(f"{where}: {key} must be an IP address, not {value!r}") from None
        if addresses[0].version != addresses[1].version:
            raise ValueError(f"{where}: remote and local must be of one IP version")

    def check_links(self, dev: DeviceSpec, devices: Mapping[str, DeviceSpec]) -> None:
        where = f"device '{dev.name}'"
        parent = devices.get(dev.parent or "")
        if parent is None:
            raise ValueError(f"{where}: parent '{dev.parent}' is not a device of this topology")
        if not kind_of(parent).carrier:
            raise ValueError(
                f"{where}: parent '{parent.name}' is a {parent.kind}; the underlay must be a veth or a bridge"
            )
        if parent.netns != dev.netns:
            raise ValueError(
                f"{where}: parent '{parent.name}' is in '{parent.netns}'; a vxlan sits in its underlay's namespace"
            )

    def request(self, dev: DeviceSpec, view: View) -> Request:
        remote = ipaddress.ip_address(str(dev.option("remote")))
        family = "" if remote.version == 4 else "6"
        args = self.common_args(dev, view) | {
            "vxlan_id": dev.option("vni"),
            "vxlan_link": view.index(dev.parent or ""),
            f"vxlan_group{family}": str(remote),
            f"vxlan_local{family}": str(dev.option("local")),
            "vxlan_port": dev.option("dstport"),
        }
        return Request(dev.netns, args, (dev.name,))

    def sample(self, name: str, netns: str, mode: str | None, parent: str) -> tuple[DeviceSpec, ...]:
        options: tuple[tuple[str, OptionValue], ...] = (
            ("vni", 42),
            ("remote", "198.18.255.2"),
            ("local", "198.18.255.1"),
            ("dstport", IANA_PORT),
        )
        return (DeviceSpec(name=name, kind=self.name, netns=netns, parent=parent, options=options),)


KIND = Vxlan()
