"""What macvlan, macvtap and ipvlan share: a device stacked on a parent (lower) device of the topology.

The parent must be a carrier kind (veth, bridge) of this topology, never a
root-namespace interface, and not a bridge port. A stacked device is created in
its parent's namespace, where the kernel finds the lower device, and placed in
its own namespace by the same request. Each stacked kind claims the parent's
receive handler for its ``handler`` family, and the kernel lets one parent
carry one family only (macvlan and macvtap share one); a vlan claims none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from vdevperf.model import DeviceSpec
from vdevperf.topology.kinds import PARENT, Key, Kind, Request, View, described, kind_of, registry


class Stacked(Kind):
    keys: ClassVar[tuple[Key, ...]] = (PARENT,)
    # The receive handler this kind installs on its parent; kinds of different families cannot share one.
    # Empty: the kind installs none (vlan), and shares a parent with any family.
    handler: ClassVar[str]

    def check(self, dev: DeviceSpec) -> None:
        if dev.parent is None:
            raise ValueError(f"device '{dev.name}': kind '{self.name}' needs a parent")

    def check_links(self, dev: DeviceSpec, devices: Mapping[str, DeviceSpec]) -> None:
        where = f"device '{dev.name}'"
        parent = devices.get(dev.parent or "")
        if parent is None:
            raise ValueError(
                f"{where}: parent '{dev.parent}' is not a device of this topology; stacked devices sit "
                "only on devices in namespaces the topology owns, never on a root-namespace interface"
            )
        if not kind_of(parent).carrier:
            carriers = [kind for kind in registry().values() if kind.carrier]
            raise ValueError(
                f"{where}: parent '{parent.name}' is a {parent.kind}; the parent must be {described(carriers)}"
            )
        if parent.master is not None:
            # The parser checked masters first: this one exists.
            raise ValueError(
                f"{where}: parent '{parent.name}' is a port of {devices[parent.master].kind} '{parent.master}' "
                "and cannot also carry stacked devices"
            )
        for other in devices.values():
            if other.parent != parent.name:
                continue
            theirs = kind_of(other)
            if isinstance(theirs, Stacked) and self.handler and theirs.handler and theirs.handler != self.handler:
                raise ValueError(
                    f"{where}: parent '{parent.name}' also carries {other.kind} '{other.name}'; "
                    f"the kernel allows {_families(self.handler, theirs.handler)} on one parent, not both"
                )

    def request(self, dev: DeviceSpec, view: View) -> Request:
        parent = view.device(dev.parent or "")
        args = self.common_args(dev, view) | {"link": view.index(parent.name)} | self.mode_args(dev)
        if parent.netns != dev.netns:
            args["net_ns_fd"] = view.netns_fd(dev.netns)
        return Request(parent.netns, args, (dev.name,))

    def mode_args(self, dev: DeviceSpec) -> dict[str, Any]:
        """The request's arguments particular to this kind: those that set ``dev.mode`` (a vlan's id)."""
        raise NotImplementedError

    def sample(self, name: str, netns: str, mode: str | None, parent: str) -> tuple[DeviceSpec, ...]:
        return (DeviceSpec(name=name, kind=self.name, netns=netns, mode=mode, parent=parent),)


def _families(*handlers: str) -> str:
    # "ipvlan or macvlan/macvtap": each family by the kinds in it.
    members = {
        handler: "/".join(
            kind.name for kind in registry().values() if isinstance(kind, Stacked) and kind.handler == handler
        )
        for handler in sorted(set(handlers))
    }
    return " or ".join(members.values())
