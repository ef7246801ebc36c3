"""Kernel probing, and one real creation per device kind (a new kind adds its case here)."""

from __future__ import annotations

import errno
import os

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vdevperf.model import KIND_MODES, DeviceKind, DeviceSpec
from vdevperf.topology import naming, netns
from vdevperf.topology.kinds import KINDS, LinkContext
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


def test_every_kind_has_a_builder():
    assert set(KINDS) == set(DeviceKind)
    assert all(kind.config.startswith("CONFIG_") for kind in KINDS.values())


# One case per kind: the spec to build and what the kernel must then report.
KIND_CASES = {
    DeviceKind.VETH: (dict(peer="q1"), "veth", None),
    DeviceKind.BRIDGE: ({}, "bridge", None),
    DeviceKind.MACVLAN: (dict(parent="p0", mode="vepa"), "macvlan", ("macvlan_mode", "vepa")),
    DeviceKind.MACVTAP: (dict(parent="p0", mode="bridge"), "macvtap", ("macvtap_mode", "bridge")),
    DeviceKind.IPVLAN: (dict(parent="p0", mode="l3"), "ipvlan", ("ipvlan_mode", 1)),
}


def test_every_kind_has_a_case():
    assert set(KIND_CASES) == set(DeviceKind)


@pytest.mark.parametrize("kind", list(DeviceKind), ids=str)
def test_kind_builder_creates_that_kind(scratch, kind):
    ipr, run_id = scratch
    fields, info_kind, data = KIND_CASES[kind]
    dev = DeviceSpec(name="t0", kind=kind, netns="t", mtu=1400, **fields)
    ctx = LinkContext(
        ifname=naming.ifname(run_id, "t0"),
        peer_ifname=naming.ifname(run_id, "q1"),
        parent_index=ipr.link_lookup(ifname=naming.ifname(run_id, "p0"))[0],
    )
    try:
        ipr.link("add", **KINDS[kind].build(dev, ctx))
    except NetlinkError as exc:
        if exc.code == errno.EOPNOTSUPP:
            pytest.skip(f"{kind}: not supported by this kernel ({KINDS[kind].config})")
        raise
    link = ipr.get_links(ifname=ctx.ifname)[0]
    assert link.get(("linkinfo", "kind")) == info_kind
    assert link.get("mtu") == 1400
    if data:
        assert link.get(("linkinfo", "data", data[0])) == data[1]
    if kind in (DeviceKind.MACVLAN, DeviceKind.MACVTAP, DeviceKind.IPVLAN):
        assert link.get("link") == ctx.parent_index


def test_probe_kinds_covers_every_kind_and_mode():
    results = probe_kinds()
    expected = [(k, m) for k in DeviceKind for m in KIND_MODES.get(k, (None,))]
    assert sorted((r.kind, r.mode or "") for r in results) == sorted((k, m or "") for k, m in expected)
    by_kind = {(r.kind, r.mode): r for r in results}
    assert by_kind[(DeviceKind.VETH, None)].supported
    assert by_kind[(DeviceKind.BRIDGE, None)].supported
    for r in results:
        assert r.reason == "ok" if r.supported else r.reason
        if not r.supported and r.reason.startswith("not supported"):
            assert KINDS[r.kind].config in r.reason


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
