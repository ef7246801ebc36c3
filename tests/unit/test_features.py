"""Topology features as data: the registry, and what routes, forwarding and redirects parse into."""

from __future__ import annotations

import ipaddress

import pytest

from vdevperf.errors import TopologyError
from vdevperf.topology import features
from vdevperf.topology.features import nat
from vdevperf.topology.features.forwarding import Forwarding
from vdevperf.topology.features.nat import Dnat, Masquerade
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
    assert list(features.registry()) == ["forwarding", "route", "nat", "redirect"]


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


def test_bridge_nat_parses_into_masquerade_and_dnat_per_ip_version_and_publishes_the_server():
    spec = load_topology("bridge-nat")
    rules = [f for f in spec.features if f.feature == "nat"]
    net, addr = ipaddress.ip_network, ipaddress.ip_address
    assert rules == [
        Masquerade("nat", "host", net("198.18.20.0/24"), "h0"),
        Masquerade("nat", "host", net("2001:2:0:20::/64"), "h0"),
        Dnat("nat", "host", addr("198.18.21.1"), addr("198.18.20.2")),
        Dnat("nat", "host", addr("2001:2:0:21::1"), addr("2001:2:0:20::2")),
    ]
    # The server binds its own address; clients connect to the host's, which the DNAT forwards.
    assert (spec.server.address(4), spec.server.target(4)) == (addr("198.18.20.2"), addr("198.18.21.1"))
    assert (spec.server.address(6), spec.server.target(6)) == (addr("2001:2:0:20::2"), addr("2001:2:0:21::1"))
    # An endpoint nothing publishes is reached at its own address.
    assert spec.client.target(4) == spec.client.address(4) == addr("198.18.21.2")
    assert [f.feature for f in spec.features] == ["forwarding", "route", "route", "nat", "nat", "nat", "nat"]


def _expr(exprs, name):
    return [dict(e["attrs"][1][1]["attrs"]) for e in exprs if e["attrs"][0][1] == name]


@pytest.mark.parametrize(
    ("prefix", "offset", "mask"),
    [
        ("198.18.20.0/24", 12, b"\xff\xff\xff\x00"),
        ("2001:2:0:20::/64", 8, b"\xff" * 8 + b"\x00" * 8),
    ],
)
def test_a_masqueraded_prefix_is_matched_on_the_source_under_its_mask(prefix, offset, mask):
    network = ipaddress.ip_network(prefix)
    exprs = nat._address_is(network.network_address, "src", network.prefixlen)
    assert _expr(exprs, "payload")[0]["NFTA_PAYLOAD_OFFSET"] == offset
    assert _expr(exprs, "bitwise")[0]["NFTA_BITWISE_MASK"] == {"attrs": [("NFTA_DATA_VALUE", mask)]}
    assert _expr(exprs, "cmp")[0]["NFTA_CMP_DATA"] == {"attrs": [("NFTA_DATA_VALUE", network.network_address.packed)]}


def test_a_dnat_matches_its_published_address_whole_and_forwards_tcp_and_udp_alike():
    spec = Dnat("nat", "host", ipaddress.ip_address("2001:2:0:21::1"), ipaddress.ip_address("2001:2:0:20::2"))
    rules = [[e for part in nat._dnat_rule(spec, proto) for e in part] for proto in nat.PROTOCOLS]
    for rule, proto in zip(rules, (6, 17), strict=True):
        assert _expr(rule, "payload")[0]["NFTA_PAYLOAD_OFFSET"] == 24  # the IPv6 destination
        assert not _expr(rule, "bitwise")  # a whole address: no mask
        assert [c["NFTA_CMP_DATA"]["attrs"][0][1] for c in _expr(rule, "cmp")] == [
            spec.published.packed,
            bytes([proto]),
        ]
        assert _expr(rule, "immediate")[0]["NFTA_IMMEDIATE_DATA"]["attrs"][0][1] == spec.to.packed
        assert _expr(rule, "nat")[0] == {"NFTA_NAT_TYPE": 1, "NFTA_NAT_FAMILY": 10, "NFTA_NAT_REG_ADDR_MIN": 1}


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ('published_ipv4 = "198.18.1.1"', "published_ipv4 198.18.1.1 is in the server's own namespace"),
        ('published_ipv4 = "198.18.1.7"', "published_ipv4 198.18.1.7 is not assigned to any device"),
        ('published_ipv6 = "2001:2::2"', "endpoint in 'a' publishes an IPv6 address but has none of its own"),
    ],
)
def test_a_published_address_belongs_to_another_namespace_and_to_a_version_the_server_has(server, message):
    text = BASE.replace(
        '[server]\nnetns = "r"\nipv4 = "198.18.1.2"\n', f'[server]\nnetns = "a"\nipv4 = "198.18.1.1"\n{server}\n'
    )
    text = text.replace('[client]\nnetns = "a"\nipv4 = "198.18.1.1"', '[client]\nnetns = "r"\nipv4 = "198.18.1.2"')
    with pytest.raises(TopologyError, match=message):
        parse_topology(text, "inline.toml")
