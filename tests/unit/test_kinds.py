"""The device-kind registry: every kind is found from its module alone, and a new module is enough.

The second half drops a kind module into the package's search path (a file
in a temporary directory) and loads a topology that uses it: no enum, list or
parser change is needed, which is the promise of topology/kinds/.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vdevperf.errors import TopologyError
from vdevperf.model import DeviceSpec
from vdevperf.topology import kinds
from vdevperf.topology.builder import creation_order
from vdevperf.topology.spec import parse_topology


def test_registry_lists_the_bundled_kinds_in_order():
    assert list(kinds.registry()) == ["veth", "bridge", "macvlan", "macvtap", "ipvlan", "vxlan", "vlan"]
    assert kinds.known() == "veth, bridge, macvlan, macvtap, ipvlan, vxlan, vlan"


@pytest.mark.parametrize("name", ["veth", "bridge", "macvlan", "macvtap", "ipvlan", "vxlan", "vlan"])
def test_each_kind_says_what_it_needs(name):
    kind = kinds.registry()[name]
    assert kind.name == name
    assert kind.config.startswith("CONFIG_") and kind.offload_note
    sample = kind.sample("t0", "probe", kind.default_mode, "p0")
    assert sample[0].kind == name and sample[0].mode == kind.default_mode


def test_stacked_modes_and_defaults():
    registry = kinds.registry()
    assert registry["macvlan"].modes == registry["macvtap"].modes == ("bridge", "private", "vepa", "passthru", "source")
    assert registry["ipvlan"].default_mode == "l2" and registry["veth"].default_mode is None


class FakeView:
    """The kinds' View for pure request tests: every device in namespace a, ifindex 7 for p0."""

    def __init__(self, *devices: DeviceSpec) -> None:
        self.devices = {d.name: d for d in devices}

    def device(self, name: str) -> DeviceSpec:
        return self.devices[name]

    def ifname(self, name: str) -> str:
        return f"vdpzzzz{name}"

    def netns_fd(self, short: str) -> int:
        return {"a": 10, "b": 11}[short]

    def index(self, name: str) -> int:
        return 7


def test_a_stacked_request_goes_to_the_parents_namespace_and_moves_the_device():
    parent = DeviceSpec(name="p0", kind="veth", netns="a", peer="p1")
    dev = DeviceSpec(name="m0", kind="ipvlan", netns="b", mode="l3s", parent="p0", mtu=1400)
    request = kinds.kind_of(dev).request(dev, FakeView(parent, dev))
    assert request.netns == "a" and request.creates == ("m0",)
    assert request.args == {
        "ifname": "vdpzzzzm0",
        "kind": "ipvlan",
        "mtu": 1400,
        "link": 7,
        "ipvlan_mode": 2,
        "net_ns_fd": 11,
    }


def test_a_vlan_request_tags_with_its_id_and_protocol_and_shares_parents_with_macvlans():
    parent = DeviceSpec(name="p0", kind="veth", netns="a", peer="p1")
    dev = DeviceSpec(name="v0", kind="vlan", netns="b", parent="p0", options=(("id", 4094), ("protocol", "802.1ad")))
    request = kinds.kind_of(dev).request(dev, FakeView(parent, dev))
    assert request.netns == "a" and request.creates == ("v0",)
    assert request.args == {
        "ifname": "vdpzzzzv0",
        "kind": "vlan",
        "link": 7,
        "vlan_id": 4094,
        "vlan_protocol": 0x88A8,
        "net_ns_fd": 11,
    }
    # The vlan driver installs no receive handler: a macvlan may share its parent (the kernel allows it).
    macvlan = DeviceSpec(name="m0", kind="macvlan", netns="a", mode="bridge", parent="p0")
    devices = {d.name: d for d in (parent, macvlan, dev)}
    kinds.kind_of(dev).check_links(dev, devices)
    kinds.kind_of(macvlan).check_links(macvlan, devices)


def test_a_vlan_defaults_to_8021q():
    spec = parse_topology(VLAN_TOPOLOGY.encode(), "vlan.toml", "vlan")
    assert dict(spec.device("v0").options) == {"id": 10, "protocol": "802.1Q"}
    dev = spec.device("v0")
    assert kinds.kind_of(dev).request(dev, FakeView(*spec.devices)).args["vlan_protocol"] == 0x8100


VLAN_TOPOLOGY = """namespaces = ["a"]
[[device]]
name = "p0"
kind = "veth"
netns = "a"
peer = "p1"
[[device]]
name = "p1"
kind = "veth"
netns = "a"
peer = "p0"
[[device]]
name = "v0"
kind = "vlan"
netns = "a"
parent = "p0"
id = 10
addresses = ["198.18.0.1/24"]
[client]
netns = "a"
ipv4 = "198.18.0.1"
[server]
netns = "a"
ipv4 = "127.0.0.1"
"""


def test_a_veth_request_makes_both_ends_with_the_peer_in_its_namespace():
    a = DeviceSpec(name="c0", kind="veth", netns="a", peer="s0")
    b = DeviceSpec(name="s0", kind="veth", netns="b", peer="c0", mtu=9000)
    request = kinds.kind_of(a).request(a, FakeView(a, b))
    assert request.netns == "a" and request.creates == ("c0", "s0")
    assert request.args["peer"] == {"ifname": "vdpzzzzs0", "net_ns_fd": 11, "mtu": 9000}


NEW_KIND = """
from vdevperf.model import DeviceSpec
from vdevperf.topology.kinds import PARENT, Key, Kind, Request, View


class Tunnel(Kind):
    name = "tunnelx"
    config = "CONFIG_TUNNELX"
    keys = (PARENT, Key("vni", int), Key("dstport", int, default=4789), Key("learning", bool, default=False))
    offload_note = "none"

    def check(self, dev: DeviceSpec) -> None:
        vni = dev.option("vni")
        if not isinstance(vni, int) or not 0 <= vni < 2**24:
            raise ValueError(f"device '{dev.name}': vni must be 0-16777215")

    def request(self, dev: DeviceSpec, view: View) -> Request:
        args = self.common_args(dev, view) | {"tunnelx_id": dev.option("vni"), "port": dev.option("dstport")}
        return Request(dev.netns, args, (dev.name,))


KIND = Tunnel()
"""


@pytest.fixture
def new_kind(tmp_path: Path) -> Iterator[None]:
    """A kind module in a directory added to the package's search path, as if dropped into it."""
    (tmp_path / "tunnelx.py").write_text(NEW_KIND)
    kinds.__path__.append(str(tmp_path))
    kinds.registry.cache_clear()
    try:
        yield
    finally:
        kinds.__path__.remove(str(tmp_path))
        sys.modules.pop("vdevperf.topology.kinds.tunnelx", None)
        kinds.registry.cache_clear()


TOPOLOGY = """namespaces = ["a"]
[[device]]
name = "p0"
kind = "veth"
netns = "a"
peer = "p1"
[[device]]
name = "p1"
kind = "veth"
netns = "a"
peer = "p0"
[[device]]
name = "t0"
kind = "tunnelx"
netns = "a"
parent = "p0"
addresses = ["198.18.0.1/24"]
{extra}
[client]
netns = "a"
ipv4 = "198.18.0.1"
[server]
netns = "a"
ipv4 = "127.0.0.1"
"""


def parse(extra: str):
    return parse_topology(TOPOLOGY.format(extra=extra).encode(), "new.toml", "new")


def test_a_new_module_is_a_new_kind_with_typed_keys_and_defaults(new_kind):
    assert "tunnelx" in kinds.known()
    spec = parse("vni = 42")
    dev = spec.device("t0")
    assert dev.kind == "tunnelx" and dev.parent == "p0" and dev.mode is None
    assert dict(dev.options) == {"vni": 42, "dstport": 4789, "learning": False}
    assert [d.name for d in creation_order(spec)] == ["p0", "t0"]
    request = kinds.kind_of(dev).request(dev, FakeView(*spec.devices))
    assert request.args["tunnelx_id"] == 42 and request.args["port"] == 4789


@pytest.mark.parametrize(
    "extra, message",
    [
        ('vni = "42"', "new.toml: device 't0': vni must be an integer, not a string"),
        ("vni = 1\nlearning = 1", "new.toml: device 't0': learning must be a boolean, not an integer"),
        ("vni = 16777216", "new.toml: device 't0': vni must be 0-16777215"),
        ("", "new.toml: device 't0': vni must be 0-16777215"),
        ('vni = 1\nmode = "l2"', "new.toml: device 't0': kind 'tunnelx' takes no mode"),
        ("vni = 1\npeer = 'p1'", "new.toml: device 't0': only a veth has a peer"),
    ],
)
def test_a_new_kinds_keys_are_checked_at_parse_time(new_kind, extra, message):
    with pytest.raises(TopologyError) as info:
        parse(extra)
    assert str(info.value) == message


def test_a_kinds_key_is_refused_on_other_kinds(new_kind):
    text = TOPOLOGY.format(extra="vni = 1").replace('peer = "p0"', 'peer = "p0"\nlearning = true', 1)
    with pytest.raises(TopologyError, match="device 'p1': only a tunnelx has a learning"):
        parse_topology(text.encode(), "new.toml", "new")


def test_without_the_module_the_kind_is_unknown():
    known = r"\(known: veth, bridge, macvlan, macvtap, ipvlan, vxlan, vlan\)"
    with pytest.raises(TopologyError, match=f"unknown kind 'tunnelx' {known}"):
        parse("")


def test_rules_name_kinds_with_their_article():
    registry = kinds.registry()
    assert kinds.described([registry["veth"], registry["bridge"]]) == "a veth or a bridge"
    assert kinds.described([registry["ipvlan"]]) == "an ipvlan"
