"""What each topology feature tries when doctor probes it: its sample, checked as data (no root needed).

The probe itself runs in tests/netns/test_probe.py; here, that every feature's sample stays inside
the scratch namespace it is given and would pass the feature's own load-time rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from vdevperf.model import DeviceSpec, FeatureSpec
from vdevperf.topology import features
from vdevperf.topology.features.forwarding import Forwarding
from vdevperf.topology.features.route import Route

SCRATCH = features.Scratch(
    "probe",
    (
        DeviceSpec(
            name="f0",
            kind="veth",
            netns="probe",
            peer="f0p",
            addresses=(ipaddress.ip_interface("198.18.252.1/24"), ipaddress.ip_interface("2001:2:0:fc::1/64")),
        ),
        DeviceSpec(
            name="f0p",
            kind="veth",
            netns="probe",
            peer="f0",
            addresses=(ipaddress.ip_interface("198.18.255.1/24"), ipaddress.ip_interface("2001:2:0:ff::1/64")),
        ),
    ),
)
OURS = {iface.ip for dev in SCRATCH.devices for iface in dev.addresses}


def test_every_sample_stays_in_the_scratch_namespace():
    for feature in features.registry().values():
        assert all(spec.netns == SCRATCH.netns and spec.feature == feature.key for spec in feature.sample(SCRATCH))


def test_every_feature_of_the_package_has_a_probe():
    """doctor says "not tried" only for a module dropped in from outside, never for one of ours."""
    assert all(feature.sample(SCRATCH) for feature in features.registry().values())


def test_forwarding_tries_the_scratch_namespace():
    assert features.registry()["forwarding"].sample(SCRATCH) == (Forwarding("forwarding", "probe"),)


def test_route_tries_one_route_per_version_through_an_on_link_gateway_that_is_not_ours():
    routes = features.registry()["route"].sample(SCRATCH)
    assert all(isinstance(r, Route) for r in routes)
    assert sorted(r.to.version for r in routes if isinstance(r, Route)) == [4, 6]
    subnets = [iface.network for dev in SCRATCH.devices for iface in dev.addresses]
    for route in routes:
        assert isinstance(route, Route) and route.via is not None and route.dev == "f0"
        assert route.via not in OURS and any(route.via in iface.network for iface in SCRATCH.devices[0].addresses)
        # A destination of its own: a connected route to it would make the kernel answer EEXIST.
        assert not any(route.to.overlaps(subnet) for subnet in subnets if subnet.version == route.to.version)


class Recorder:
    """A feature View that records what is asked of it (the probe's own view is in probe.py)."""

    def __init__(self) -> None:
        self.sysctls: list[tuple[str, str, str]] = []

    def ipr(self, short: str) -> Any:
        raise AssertionError("no netlink in a unit test")

    def index(self, name: str) -> int:
        return 1

    def ifname(self, name: str) -> str:
        return name

    def netns_fd(self, short: str) -> int:
        return -1

    def sysctl(self, short: str, key: str, value: str) -> None:
        self.sysctls.append((short, key, value))


class Bare(features.Feature):
    key = "bare"

    def apply(self, specs: Sequence[FeatureSpec], view: features.View) -> None:
        raise AssertionError("a feature without a sample is not applied by the probe")


def test_a_feature_without_a_sample_is_not_tried_and_one_with_a_sample_is_applied():
    assert Bare().probe(Recorder(), SCRATCH) is False
    view = Recorder()
    assert features.registry()["forwarding"].probe(view, SCRATCH) is True
    assert view.sysctls == [("probe", "net/ipv4/ip_forward", "1"), ("probe", "net/ipv6/conf/all/forwarding", "1")]
