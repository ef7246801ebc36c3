"""Topology features as data: the registry, and what routes, forwarding and redirects parse into."""

from __future__ import annotations

import ipaddress

import pytest

from vdevperf.errors import TopologyError
from vdevperf.topology import features
from vdevperf.topology.features.forwarding import Forwarding
from vdevperf.topology.features.redirect import Redirect
from vdevperf.topology.features.route import Route
from vdevperf.topology.spec import load_topology, parse_topology

BASE = (
    'namespaces = ["a", "r"]\n'
    '[[device]]\nname = "a0"\nkind = "veth"\nnetns = "a"\npeer = "r0"\naddresses = ["198.18.1.1/24", "2001:2::1/64"]\n'
    '[[device]]\nname = "r0"\nkind = "veth"\nnetns = "r"\npeer = "a0"\naddresses = ["198.18.1.2/24", "2001:2::2/64"]\n'
    '[client]\nnetns = "a"\nipv4 = "198.18.1.1"\n[server]\nnetns = "r"\nipv4 = "198.18.1.2"\n'
)


def test_features_are_found_in_their_package_in_apply_order():
    assert list(features.registry()) == ["forwarding", "route", "redirect"]


def test_routed_parses_into_typed_entries_in_apply_order():
    spec = load_topology("routed")
    assert spec.features[0] == Forwarding("forwarding", "rtr")
    routes = [f for f in spec.features if isinstance(f, Route)]
    assert [(r.netns, str(r.to), str(r.via)) for r in routes] == [
        ("cli", "0.0.0.0/0", "198.18.11.254"),
        ("cli", "::/0", "2001:2:0:11::fe"),
        ("srv", "0.0.0.0/0", "198.18.12.254"),
        ("srv", "::/0", "2001:2:0:12::fe"),
    ]


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ('to = "198.18.7.0/24"\ndev = "a0"', Route("route", "a", ipaddress.ip_network("198.18.7.0/24"), None, "a0")),
        (
            'to = "default"\nvia = "2001:2::2"\ndev = "a0"',
            Route("route", "a", ipaddress.ip_network("::/0"), ipaddress.ip_address("2001:2::2"), "a0"),
        ),
    ],
)
def test_a_route_by_device_or_by_both(route, expected):
    spec = parse_topology(BASE + f'[[route]]\nnetns = "a"\n{route}\n', "inline.toml")
    assert spec.features == (expected,)


def test_a_gateway_on_another_device_of_the_namespace_is_not_on_link_for_dev():
    text = BASE.replace('namespaces = ["a", "r"]', 'namespaces = ["a", "r", "b"]') + (
        '[[device]]\nname = "a1"\nkind = "veth"\nnetns = "a"\npeer = "b0"\naddresses = ["198.18.2.1/24"]\n'
        '[[device]]\nname = "b0"\nkind = "veth"\nnetns = "b"\npeer = "a1"\n'
        '[[route]]\nnetns = "a"\nto = "198.18.9.0/24"\nvia = "198.18.2.2"\ndev = "a0"\n'
    )
    with pytest.raises(TopologyError, match="gateway 198.18.2.2 is on no subnet of device 'a0'"):
        parse_topology(text, "inline.toml")


def test_tc_redirect_parses_both_ways_into_typed_entries():
    spec = load_topology("tc-redirect")
    assert spec.features == (Redirect("redirect", "hub", "h0", "h1"), Redirect("redirect", "hub", "h1", "h0"))


@pytest.mark.parametrize(
    ("both", "expected"),
    [
        ("", (Redirect("redirect", "r", "r0", "r1"),)),
        ("both = false\n", (Redirect("redirect", "r", "r0", "r1"),)),
        ("both = true\n", (Redirect("redirect", "r", "r0", "r1"), Redirect("redirect", "r", "r1", "r0"))),
    ],
)
def test_a_redirect_goes_one_way_unless_both(both, expected):
    text = BASE.replace('namespaces = ["a", "r"]', 'namespaces = ["a", "r", "b"]') + (
        '[[device]]\nname = "r1"\nkind = "veth"\nnetns = "r"\npeer = "b0"\n'
        '[[device]]\nname = "b0"\nkind = "veth"\nnetns = "b"\npeer = "r1"\n'
        f'[[redirect]]\nnetns = "r"\nfrom = "r0"\nto = "r1"\n{both}'
    )
    assert parse_topology(text, "inline.toml").features == expected


def test_two_redirects_may_share_a_target_but_not_a_source():
    text = BASE.replace('namespaces = ["a", "r"]', 'namespaces = ["a", "r", "b"]') + (
        '[[device]]\nname = "r1"\nkind = "veth"\nnetns = "r"\npeer = "b0"\n'
        '[[device]]\nname = "b0"\nkind = "veth"\nnetns = "b"\npeer = "r1"\n'
        '[[device]]\nname = "r2"\nkind = "bridge"\nnetns = "r"\n'
        '[[redirect]]\nnetns = "r"\nfrom = "r0"\nto = "r2"\n'
        '[[redirect]]\nnetns = "r"\nfrom = "r1"\nto = "r2"\n'
    )
    assert [(r.ingress, r.egress) for r in parse_topology(text, "inline.toml").features] == [("r0", "r2"), ("r1", "r2")]
    with pytest.raises(TopologyError, match="redirect #3: frames from 'r0' already go to 'r2'"):
        parse_topology(text + '[[redirect]]\nnetns = "r"\nfrom = "r0"\nto = "r1"\n', "inline.toml")
