"""Kernel probing, and one real creation per device kind (a new kind adds its case here)."""

from __future__ import annotations

import errno
import os

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vdevperf.model import DeviceSpec
from vdevperf.topology import naming, netns
from vdevperf.topology.kinds import registry
from vdevperf.topology.ledger import Ledger, create_namespace
from vdevperf.topology.probe import KernelFacts, doctor_report, has_privileges, kernel_facts, probe_kinds


@pytest.fixture
def scratch():
    """A ledgered scratch namespace with a veth pair p0/p1 in it; yields (IPRoute, run id)."""
    ledger = Ledger.create(topology="test")
    name = naming.netns_name(ledger.run_id, "t")
    create_namespace(ledger, name)
    fd = netns.open_fd(name)
    try:
        with netns.entered(fd):
            ipr = IPRoute(groups=0)
        with ipr:
            ipr.link(
                "add",
                ifname=naming.ifname(ledger.run_id, "p0"),
                kind="veth",
                peer={"ifname": naming.ifname(ledger.run_id, "p1")},
            )
            yield ipr, ledger.run_id
    finally:
        os.close(fd)
        netns.remove(name)
        ledger.remove()


def test_every_kind_names_its_config_option_and_offload_note():
    assert list(registry()) == ["veth", "bridge", "macvlan", "macvtap", "ipvlan", "vxlan", "vlan"]
    assert all(kind.config.startswith("CONFIG_") and kind.offload_note for kind in registry().values())


# One case per kind: the spec to build and what the kernel must then report.
KIND_CASES = {
    "veth": (dict(peer="q1"), "veth", None),
    "bridge": ({}, "bridge", None),
    "macvlan": (dict(parent="p0", mode="vepa"), "macvlan", ("macvlan_mode", "vepa")),
    "macvtap": (dict(parent="p0", mode="bridge"), "macvtap", ("macvtap_mode", "bridge")),
    "ipvlan": (dict(parent="p0", mode="l3"), "ipvlan", ("ipvlan_mode", 1)),
    "vxlan": (
        dict(
            parent="p0", options=(("vni", 42), ("remote", "198.18.255.2"), ("local", "198.18.255.1"), ("dstport", 4789))
        ),
        "vxlan",
        ("vxlan_id", 42),
    ),
    "vlan": (dict(parent="p0", options=(("id", 42), ("protocol", "802.1ad"))), "vlan", ("vlan_id", 42)),
}


def test_every_kind_has_a_case():
    assert set(KIND_CASES) == set(registry())


class ScratchView:
    """The kinds' View over the scratch namespace: every device in it, p0 made by the fixture."""

    def __init__(self, ipr, run_id, devices):
        self.ipr, self.run_id, self.devices = ipr, run_id, {d.name: d for d in devices}

    def device(self, name):
        return self.devices[name]

    def ifname(self, name):
        return naming.ifname(self.run_id, name)

    def netns_fd(self, short):
        raise AssertionError("every device of these cases is in the scratch namespace")

    def index(self, name):
        return self.ipr.link_lookup(ifname=self.ifname(name))[0]


@pytest.mark.parametrize("name", list(KIND_CASES))
def test_kind_request_creates_that_kind(scratch, name):
    ipr, run_id = scratch
    kind = registry()[name]
    fields, info_kind, data = KIND_CASES[name]
    dev = DeviceSpec(name="t0", kind=name, netns="t", mtu=1400, **fields)
    others = [DeviceSpec(name="p0", kind="veth", netns="t", peer="p1"), DeviceSpec(name="q1", kind="veth", netns="t")]
    view = ScratchView(ipr, run_id, [dev, *others])
    request = kind.request(dev, view)
    assert request.netns == "t" and request.creates[0] == "t0"
    try:
        ipr.link("add", **request.args)
    except NetlinkError as exc:
        if exc.code == errno.EOPNOTSUPP:
            pytest.skip(f"{name}: not supported by this kernel ({kind.config})")
        raise
    link = ipr.get_links(ifname=view.ifname("t0"))[0]
    assert link.get(("linkinfo", "kind")) == info_kind
    assert link.get("mtu") == 1400
    if data:
        assert link.get(("linkinfo", "data", data[0])) == data[1]
    if "parent" in fields:
        # Stacked kinds name their parent in IFLA_LINK; a vxlan names its underlay in its own data.
        lower = link.get("link") if name != "vxlan" else link.get(("linkinfo", "data", "vxlan_link"))
        assert lower == view.index("p0")
    for other in request.creates[1:]:
        assert ipr.link_lookup(ifname=view.ifname(other)), f"{other} was to come with t0"


def test_probe_kinds_covers_every_kind_and_mode():
    results = probe_kinds()
    expected = [(k.name, m) for k in registry().values() for m in k.modes or (None,)]
    assert sorted((r.kind, r.mode or "") for r in results) == sorted((k, m or "") for k, m in expected)
    by_kind = {(r.kind, r.mode): r for r in results}
    assert by_kind[("veth", None)].supported
    assert by_kind[("bridge", None)].supported
    for r in results:
        assert r.reason == "ok" if r.supported else r.reason
        if not r.supported and r.reason.startswith("not supported"):
            assert registry()[r.kind].config in r.reason


def test_privileges_and_facts():
    assert has_privileges()
    facts = kernel_facts()
    assert isinstance(facts, KernelFacts)
    assert facts.release == os.uname().release
    assert facts.cpu_count >= 1 and facts.cpu_model
    assert facts.congestion_control == open("/proc/sys/net/ipv4/tcp_congestion_control").read().strip()


def test_doctor_report():
    report = doctor_report()
    assert "privileges: ok" in report and "veth: ok" in report
