"""Topology features: what a topology sets up inside its namespaces besides devices.

Routes, IP forwarding, NAT rules and tc redirects are not devices, but the paths users
measure need them (a routed veth, Docker's bridge with NAT, eBPF-style host routing).
Each feature is one module of this package, found the way device kinds are (kinds/):
it owns one top-level key of topology files, parses that key's value into typed
FeatureSpecs (checked at load time against the topology's namespaces and devices, so
that building fails only for reasons of the running system), and applies them in the
built namespaces, after every device is up with its addresses and before the topology
is declared ready.

Everything a feature sets lives inside the topology's own namespaces (routes, sysctls,
nftables tables, qdiscs), so it goes with them at teardown: a feature has no teardown
of its own, and it never touches the root namespace.

``doctor`` asks each feature whether this kernel has what it needs by letting it try
itself for real (``probe``) in a scratch namespace of the probe's (topology/probe.py),
on a veth pair there: by default the feature applies its own ``sample`` entries, so a
probe runs the same code a build does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from vdevperf.model import DeviceSpec, FeatureSpec
from vdevperf.topology import plugins


@dataclass(frozen=True)
class Draft:
    """What a feature's parser checks its entries against: the topology's namespaces and its
    devices (parsed and checked already), by short name."""

    namespaces: tuple[str, ...]
    devices: Mapping[str, DeviceSpec]

    def namespace(self, name: Any, where: str) -> str:
        """``name`` if it is a declared namespace."""
        if not isinstance(name, str) or name not in self.namespaces:
            raise ValueError(f"{where}: namespace {name!r} is not declared (declared: {', '.join(self.namespaces)})")
        return name

    def device_in(self, name: Any, netns: str, where: str) -> DeviceSpec:
        """The device ``name``, which must be in namespace ``netns``."""
        dev = self.devices.get(name) if isinstance(name, str) else None
        if dev is None:
            raise ValueError(f"{where}: {name!r} is not a device of this topology")
        if dev.netns != netns:
            raise ValueError(f"{where}: device '{dev.name}' is in namespace '{dev.netns}', not '{netns}'")
        return dev


@dataclass(frozen=True)
class Scratch:
    """Where the probe lets a feature try itself: its namespace ``netns`` (ours, never the root
    one) holding ``devices``, a veth pair, both up, each with the addresses it lists."""

    netns: str
    devices: tuple[DeviceSpec, ...]


class View(Protocol):
    """The built topology as a feature sees it (builder.Topology, or the probe's scratch namespace)."""

    def ipr(self, short: str) -> Any:
        """The pyroute2 IPRoute bound to namespace ``short``."""

    def index(self, name: str) -> int:
        """The ifindex of device ``name`` in its namespace."""

    def ifname(self, name: str) -> str:
        """The real interface name of device ``name``."""

    def netns_fd(self, short: str) -> int:
        """An open fd of namespace ``short``."""

    def sysctl(self, short: str, key: str, value: str) -> None:
        """Write ``/proc/sys/<key>`` as seen from namespace ``short`` (never the root namespace)."""


class Feature:
    """A topology feature. Subclasses set the class attributes and implement parse and apply.

    ``parse`` raises ValueError with the message that ends the one-line error (the parser
    adds the file); ``apply`` raises OSError or pyroute2's NetlinkError, which the builder
    turns into one line naming the topology and the feature.
    """

    # The top-level key of topology files this feature owns.
    key: ClassVar[str]
    # The kernel options it needs, named when the kernel refuses (doctor lists them).
    config: ClassVar[str] = ""
    # Apply order: lower first (forwarding before routes before NAT rules).
    order: ClassVar[int] = 100
    # One line for doctor and the docs.
    summary: ClassVar[str] = ""

    def parse(self, value: Any, draft: Draft) -> tuple[FeatureSpec, ...]:
        """The typed entries of this feature's key."""
        raise NotImplementedError

    def apply(self, specs: Sequence[FeatureSpec], view: View) -> None:
        """Set up ``specs`` (all of this feature's entries) in the built namespaces."""
        raise NotImplementedError

    def sample(self, scratch: Scratch) -> tuple[FeatureSpec, ...]:
        """Entries the probe applies in ``scratch`` to learn whether this kernel has what this
        feature needs; none (the default) means the feature has no probe, and doctor says so."""
        return ()

    def probe(self, view: View, scratch: Scratch) -> bool:
        """Try this feature for real in the probe's scratch namespace, raising as ``apply`` does
        when the kernel refuses; False if there was nothing to try. Applies ``sample`` by default:
        override it to check more than that the kernel accepted the entries."""
        specs = self.sample(scratch)
        if specs:
            self.apply(specs, view)
        return bool(specs)


def _discover() -> dict[str, Feature]:
    found = plugins.discover(__name__, __path__, "FEATURE", Feature, lambda feature: (feature.order, feature.key))
    return {feature.key: feature for feature in found}


@functools.cache
def registry() -> Mapping[str, Feature]:
    """Every feature, by its key, in apply order; found once, on first use, from this package's modules."""
    return _discover()


def entries(value: Any, where: str) -> list[Any]:
    """The entries of an array-of-tables key (``[[route]]``)."""
    if not isinstance(value, list):
        raise ValueError(f"'{where}' must be a list of tables (write each as [[{where}]])")
    return value
