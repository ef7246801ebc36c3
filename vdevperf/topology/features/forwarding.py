"""forwarding: namespaces that forward IP packets between their devices, as a router does.

``forwarding = ["rtr"]`` sets net.ipv4.ip_forward and net.ipv6.conf.all.forwarding in
those namespaces only (each namespace has its own copy of these sysctls). Routed paths
(Calico's, seed 004's etun with IP routes) cross one such namespace: every packet goes
through ip_forward, which is the cost they add over a bridge or a plain veth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vdevperf.model import FeatureSpec
from vdevperf.topology.features import Draft, Feature, Scratch, View

SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")


@dataclass(frozen=True)
class Forwarding(FeatureSpec):
    """IP forwarding on, in ``netns``."""


class ForwardingFeature(Feature):
    key = "forwarding"
    order = 10
    summary = "IP forwarding in the listed namespaces (their own sysctls only)"

    def parse(self, value: Any, draft: Draft) -> tuple[FeatureSpec, ...]:
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise ValueError("'forwarding' must be a list of namespace names")
        if len(set(value)) != len(value):
            raise ValueError("'forwarding' names a namespace twice")
        return tuple(Forwarding(self.key, draft.namespace(name, "'forwarding'")) for name in value)

    def apply(self, specs: Sequence[FeatureSpec], view: View) -> None:
        for spec in specs:
            for key in SYSCTLS:
                view.sysctl(spec.netns, key, "1")

    def sample(self, scratch: Scratch) -> tuple[FeatureSpec, ...]:
        return (Forwarding(self.key, scratch.netns),)


FEATURE = ForwardingFeature()
