"""route: static routes inside the topology's namespaces, for paths that cross a router namespace.

Each ``[[route]]`` names its namespace, its destination (``to``: a prefix, or
``default``) and how to reach it: ``via`` a gateway on a subnet of that namespace's
devices, ``dev`` a device of that namespace, or both. Routes are checked when the file
loads (the gateway must be on-link, the device in the namespace), so a routed topology
that loads fails to build only for reasons of the running system.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vdevperf.model import FeatureSpec
from vdevperf.topology import values
from vdevperf.topology.features import Draft, Feature, Scratch, View, entries

KEYS = ("netns", "to", "via", "dev")
DEFAULTS = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


@dataclass(frozen=True)
class Route(FeatureSpec):
    """A route in ``netns`` to ``to`` via gateway ``via`` and/or out of device ``dev`` (a short name)."""

    to: values.IPNetwork
    via: values.IPAddress | None = None
    dev: str | None = None


class RouteFeature(Feature):
    key = "route"
    order = 20
    summary = "static routes in the topology's namespaces ([[route]]: netns, to, via, dev)"

    def parse(self, value: Any, draft: Draft) -> tuple[FeatureSpec, ...]:
        return tuple(self._route(n, entry, draft) for n, entry in enumerate(entries(value, self.key)))

    def _route(self, n: int, entry: Any, draft: Draft) -> Route:
        where = f"route #{n + 1}"
        table = values.table(entry, where, KEYS, required=("netns", "to"))
        netns = draft.namespace(table["netns"], where)
        via = values.address(table["via"], f"{where}: via") if "via" in table else None
        dev = draft.device_in(table["dev"], netns, f"{where}: dev").name if "dev" in table else None
        if via is None and dev is None:
            raise ValueError(f"{where}: give 'via' (a gateway), 'dev' (a device of '{netns}') or both")
        if table["to"] == "default":
            to = DEFAULTS[via.version if via is not None else 4]
        else:
            to = values.network(table["to"], f"{where}: to")
        if via is not None:
            if via.version != to.version:
                raise ValueError(f"{where}: via {via} is IPv{via.version} but to {to} is IPv{to.version}")
            subnets = [
                iface.network
                for name, dev_spec in draft.devices.items()
                if dev_spec.netns == netns and (dev is None or name == dev)
                for iface in dev_spec.addresses
            ]
            if not any(via in subnet for subnet in subnets):
                raise ValueError(
                    f"{where}: gateway {via} is on no subnet of {f'device {dev!r}' if dev else f'namespace {netns!r}'}"
                    " (a gateway must be on-link)"
                )
        return Route(self.key, netns, to, via, dev)

    def apply(self, specs: Sequence[FeatureSpec], view: View) -> None:
        for spec in specs:
            assert isinstance(spec, Route)
            args: dict[str, Any] = {
                "dst": str(spec.to),
                "family": socket.AF_INET if spec.to.version == 4 else socket.AF_INET6,
            }
            if spec.via is not None:
                args["gateway"] = str(spec.via)
            if spec.dev is not None:
                args["oif"] = view.index(spec.dev)
            view.ipr(spec.netns).route("add", **args)

    def sample(self, scratch: Scratch) -> tuple[FeatureSpec, ...]:
        # One route per address of the scratch device (one per IP version), to the network next to
        # its own, through an on-link gateway (two past its address, not one of ours), out of that device.
        dev = scratch.devices[0]
        routes: list[FeatureSpec] = []
        for iface in dev.addresses:
            network = iface.network
            beyond = type(network)((int(network.broadcast_address) + 1, network.prefixlen))
            routes.append(Route(self.key, scratch.netns, beyond, iface.ip + 2, dev.name))
        return tuple(routes)


FEATURE = RouteFeature()
