"""vlan: an 802.1Q (or 802.1ad) tagged sub-interface of a parent, as on a trunk port.

Frames leave the parent with a tag carrying the vlan ``id`` (1-4094; 0 and 4095 are
reserved), and arrive untagged at the vlan device holding that id. The cost measured
is one more device pass and the tag, which a veth carries as skb metadata (its tx-vlan
offload) rather than inserting it into the frame. A kernel without CONFIG_VLAN_8021Q
(this project's CI kernel) has no vlan: its path runs in the kernel lab (docs/lab.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vdevperf.model import DeviceSpec, OptionValue
from vdevperf.topology.kinds import PARENT, Key
from vdevperf.topology.kinds._stacked import Stacked

# The tag's EtherType (IFLA_VLAN_PROTOCOL) by the names ``ip link ... proto`` takes.
PROTOCOLS = {"802.1Q": 0x8100, "802.1ad": 0x88A8}
ID_MAX = 4094


class Vlan(Stacked):
    name = "vlan"
    config = "CONFIG_VLAN_8021Q"
    order = 70
    keys = (PARENT, Key("id", int), Key("protocol", str, "802.1Q"))
    # The vlan driver claims no receive handler: it shares a parent with macvlan or ipvlan devices.
    handler = ""
    offload_note = (
        "takes its parent's vlan_features at creation; on a veth parent the tag travels as skb metadata "
        "(tx-vlan offload), so segmentation and checksum offloads still apply to the tagged frames"
    )

    def check(self, dev: DeviceSpec) -> None:
        super().check(dev)
        where = f"device '{dev.name}'"
        vlan_id = dev.option("id")
        if not isinstance(vlan_id, int) or not 0 < vlan_id <= ID_MAX:
            raise ValueError(f"{where}: id must be 1-{ID_MAX} (the vlan id; 0 and 4095 are reserved)")
        protocol = dev.option("protocol")
        if protocol not in PROTOCOLS:
            raise ValueError(f"{where}: protocol must be {' or '.join(PROTOCOLS)}, not {protocol!r}")

    def check_links(self, dev: DeviceSpec, devices: Mapping[str, DeviceSpec]) -> None:
        super().check_links(dev, devices)
        # Named on the second of the two, as the file reads: the devices before this one.
        for other in devices.values():
            if other.name == dev.name:
                break
            same = (other.parent, other.option("id"), other.option("protocol"))
            if other.kind == self.name and same == (dev.parent, dev.option("id"), dev.option("protocol")):
                raise ValueError(
                    f"device '{dev.name}': vlan '{other.name}' has id {dev.option('id')} on parent "
                    f"'{dev.parent}' already (one vlan per id and protocol on a parent)"
                )

    def mode_args(self, dev: DeviceSpec) -> dict[str, Any]:
        return {"vlan_id": dev.option("id"), "vlan_protocol": PROTOCOLS[str(dev.option("protocol"))]}

    def sample(self, name: str, netns: str, mode: str | None, parent: str) -> tuple[DeviceSpec, ...]:
        options: tuple[tuple[str, OptionValue], ...] = (("id", 42), ("protocol", "802.1Q"))
        return (DeviceSpec(name=name, kind=self.name, netns=netns, parent=parent, options=options),)


KIND = Vlan()
