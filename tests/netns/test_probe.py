"""Kernel probing, and one real creation per device kind (a new kind adds its case here)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vdevperf.errors import UnsupportedKind
from vdevperf.model import DeviceSpec
from vdevperf.topology import features, naming, netns
from vdevperf.topology import ledger as ledger_mod
from vdevperf.topology.builder import build
from vdevperf.topology.kinds import registry
from vdevperf.topology.ledger import Ledger, create_namespace
from vdevperf.topology.probe import (
    FeatureSupport,
    KernelFacts,
    doctor_report,
    has_privileges,
    kernel_facts,
    probe_features,
    probe_kinds,
)
from vdevperf.topology.spec import load_topology


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


# -- doctor: every kind and feature of the registries, judged against the kernel -------------------------------


def _status(report: str, label: str) -> str:
    found = [line.split(": ", 1)[1] for line in report.splitlines() if line.startswith(f"{label}: ")]
    assert len(found) == 1, f"{label!r} is listed {len(found)} times in:\n{report}"
    return found[0]


def _kernel_has(ipr, run_id, kind, **args):
    """Ask the kernel directly (raw pyroute2, not the kind's module) whether it creates ``kind`` on p0."""
    try:
        ipr.link(
            "add",
            ifname=naming.ifname(run_id, "k0"),
            kind=kind,
            link=ipr.link_lookup(ifname=naming.ifname(run_id, "p0"))[0],
            **args,
        )
    except NetlinkError as exc:
        assert exc.code == errno.EOPNOTSUPP, exc
        return False
    ipr.link("del", index=ipr.link_lookup(ifname=naming.ifname(run_id, "k0"))[0])
    return True


def test_doctor_lists_every_kind_mode_and_feature_with_its_verdict(scratch):
    report = doctor_report()
    for kind in registry().values():
        for mode in kind.modes or (None,):
            status = _status(report, kind.name if mode is None else f"{kind.name} mode {mode}")
            assert status == "ok" or status.startswith(("not supported by this kernel", "not tried")), status
    for key in features.registry():
        status = _status(report, f"feature {key}")
        assert status == "ok" or status.startswith(("not supported by this kernel", "not tried")), status
    # This kernel (and CI's) has IP forwarding, routes, nftables NAT and tc mirred: each must read ok.
    for key in ("forwarding", "route", "nat", "redirect"):
        assert _status(report, f"feature {key}") == "ok", report
    # Against the kernel itself: what it creates when asked directly, doctor calls ok, and nothing else.
    ipr, run_id = scratch
    for kind, label, args in (
        ("vlan", "vlan", dict(vlan_id=42)),
        ("ipvlan", "ipvlan mode l3s", dict(ipvlan_mode=2)),
        ("macvlan", "macvlan mode bridge", dict(macvlan_mode="bridge")),
    ):
        expected = (
            "ok"
            if _kernel_has(ipr, run_id, kind, **args)
            else f"not supported by this kernel ({registry()[kind].config})"
        )
        assert _status(report, label) == expected
    # Every kernel with network namespaces forwards and routes inside them.
    assert _status(report, "feature forwarding") == "ok"
    assert _status(report, "feature route") == "ok"


SPY = """
from vdevperf.topology import netns
from vdevperf.topology.features import Feature

SEEN = {}


class Spy(Feature):
    key = "zzspy"
    order = 999

    def probe(self, view, scratch):
        ipr = view.ipr(scratch.netns)
        SEEN["routes"] = sorted(
            (r.get("dst"), r.get("gateway"))
            for family in (2, 10)
            for r in ipr.get_routes(family=family, table=254)
            if r.get("gateway")
        )
        with netns.entered(view.netns_fd(scratch.netns)):
            SEEN["ip_forward"] = open("/proc/sys/net/ipv4/ip_forward").read().strip()
            SEEN["ipv6_forwarding"] = open("/proc/sys/net/ipv6/conf/all/forwarding").read().strip()
        SEEN["devices"] = [(d.name, [str(a) for a in d.addresses]) for d in scratch.devices]
        return True


FEATURE = Spy()
"""

REFUSED = """
import ipaddress

from vdevperf.topology.features.route import Route, RouteFeature


class Refused(RouteFeature):
    key = "zzrefused"
    config = "CONFIG_ZZ"

    def sample(self, scratch):
        # A gateway on no subnet of the device: the kernel itself refuses it (ENETUNREACH).
        to, via = ipaddress.ip_network("198.18.99.0/24"), ipaddress.ip_address("203.0.113.1")
        return (Route(self.key, scratch.netns, to, via, scratch.devices[0].name),)


FEATURE = Refused()
"""

UNPROBED = """
from vdevperf.topology.features import Feature


class Unprobed(Feature):
    key = "zzunprobed"


FEATURE = Unprobed()
"""


@pytest.fixture
def extra_features(tmp_path):
    """Feature modules dropped into the package's search path, as another helper's module would be."""
    for name, text in (("zzspy", SPY), ("zzrefused", REFUSED), ("zzunprobed", UNPROBED)):
        (tmp_path / f"{name}.py").write_text(text)
    features.__path__.append(str(tmp_path))
    features.registry.cache_clear()
    try:
        yield
    finally:
        features.__path__.remove(str(tmp_path))
        for name in ("zzspy", "zzrefused", "zzunprobed"):
            sys.modules.pop(f"vdevperf.topology.features.{name}", None)
        features.registry.cache_clear()


def test_features_probe_for_real_in_the_scratch_namespace_only(extra_features):
    root_forward = open("/proc/sys/net/ipv4/ip_forward").read()
    results = {r.feature: r for r in probe_features()}
    assert list(results) == list(features.registry())
    assert results["forwarding"].supported and results["route"].supported
    spy = sys.modules["vdevperf.topology.features.zzspy"].SEEN
    # forwarding and route ran first (apply order) and left their work in the scratch namespace.
    assert spy["ip_forward"] == "1" and spy["ipv6_forwarding"] == "1"
    assert ("198.18.253.0", "198.18.252.3") in spy["routes"] and ("2001:2:0:fd::", "2001:2:0:fc::3") in spy["routes"]
    assert spy["devices"][0][1] == ["198.18.252.1/24", "2001:2:0:fc::1/64"]
    # A refusal is the kernel's own reason; a module without a probe says so; the root namespace is untouched.
    assert results["zzrefused"] == FeatureSupport("zzrefused", False, "Network is unreachable (errno 101)")
    assert results["zzunprobed"] == FeatureSupport("zzunprobed", False, "not tried: its module has no probe")
    assert open("/proc/sys/net/ipv4/ip_forward").read() == root_forward
    report = doctor_report()
    assert "feature zzunprobed: not tried: its module has no probe" in report.splitlines()


LAB = Path(__file__).resolve().parents[1] / "lab"


@pytest.mark.parametrize(("path", "kind", "mode"), [("vlan.toml", "vlan", None), ("ipvlan_l3s.toml", "ipvlan", "l3s")])
def test_the_labs_topologies_build_where_the_kernel_has_their_kind_and_say_so_in_one_line_where_not(path, kind, mode):
    spec = load_topology(str(LAB / path))
    supported = {(r.kind, r.mode): r.supported for r in probe_kinds()}[(kind, mode)]
    run_id = naming.new_run_id(ledger_mod.run_ids_in_use())
    try:
        topo = build(spec, run_id=run_id)
    except UnsupportedKind as exc:
        assert not supported, "doctor says it works: the build must too"
        assert (
            str(exc)
            == f"topology {spec.name}: device kind '{kind}' is not supported by this kernel ({registry()[kind].config})"
        )
        assert not [n for n in netns.list_ours() if n.startswith(f"{naming.PREFIX}-{run_id}-")]
        assert not ledger_mod.ledger_path(run_id).exists()
        pytest.skip(str(exc))
    with topo:
        assert supported, "it built: doctor must say it works"
        for dev in spec.devices:
            if dev.kind == kind:
                ipr = topo.ipr(dev.netns)
                link = ipr.get_links(topo.index(dev.name))[0]
                assert link.get(("linkinfo", "kind")) == kind
