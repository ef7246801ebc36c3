"""The tc-redirect path, built for real: the redirect alone carries the traffic across a hub that has no bridge, no
forwarding and no addresses, and nothing of it reaches the root namespace."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from vdevperf.topology import netns
from vdevperf.topology.builder import build
from vdevperf.topology.features.redirect import FEATURE, INGRESS_HANDLE
from vdevperf.topology.spec import load_topology

ACTION = ("TCA_OPTIONS", "TCA_U32_ACT", "TCA_ACT_PRIO_1")
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")


def _redirects(topo, dev: str) -> list[tuple[int, int]]:
    """(target ifindex, packets redirected) of each mirred action on ``dev``'s ingress."""
    found = []
    for msg in topo.ipr("hub").get_filters(index=topo.index(dev), parent=INGRESS_HANDLE):
        parms = msg.get((*ACTION, "TCA_ACT_OPTIONS", "TCA_MIRRED_PARMS"))
        if parms is not None:
            found.append((parms["ifindex"], msg.get((*ACTION, "TCA_ACT_STATS", "TCA_STATS_BASIC"))["packets"]))
    return found


def _exchange(topo, version: int, timeout_s: float) -> None:
    """One TCP connection from the client to the server, 64 KiB each way."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    with netns.entered(topo.netns_fd("srv")):
        server = socket.socket(family, socket.SOCK_STREAM)
    with server:
        server.bind((topo.server.address(version), 0))
        server.listen()
        with netns.entered(topo.netns_fd("cli")):
            client = socket.create_connection(server.getsockname()[:2], timeout=timeout_s)
        with client:
            conn, peer = server.accept()
            with conn:
                assert peer[0] == topo.client.address(version)
                for sender, receiver in ((client, conn), (conn, client)):
                    sender.sendall(b"x" * 65536)
                    got = 0
                    while got < 65536:
                        got += len(receiver.recv(65536))


def _root_state() -> tuple[object, ...]:
    with IPRoute(groups=0) as ipr:
        links = sorted((link["index"], link.get("ifname")) for link in ipr.get_links())
        qdiscs = sorted((q["index"], q["handle"], q["parent"], q.get("TCA_KIND")) for q in ipr.get_qdiscs())
    return links, qdiscs, tuple(Path(f"/proc/sys/{key}").read_text() for key in SYSCTLS)


def test_the_redirect_alone_carries_the_traffic_across_the_hub():
    root = _root_state()
    with build(load_topology("tc-redirect")) as topo:
        hub = topo.ipr("hub")
        # Nothing else could move a packet across: no bridge, no forwarding, no IPv4 address in the hub.
        assert {link.get(("linkinfo", "kind")) for link in hub.get_links()} == {None, "veth"}  # lo has no kind
        with netns.entered(topo.netns_fd("hub")):
            assert [Path(f"/proc/sys/{key}").read_text().strip() for key in SYSCTLS] == ["0", "0"]
        assert [a.get("IFA_ADDRESS") for a in hub.get_addr(family=socket.AF_INET)] == ["127.0.0.1"]
        # Each way, one mirred action sends everything h0 receives out of h1, and back.
        before = {dev: _redirects(topo, dev) for dev in ("h0", "h1")}
        assert [target for target, _ in before["h0"]] == [topo.index("h1")]
        assert [target for target, _ in before["h1"]] == [topo.index("h0")]
        for version in (4, 6):
            _exchange(topo, version, timeout_s=5)
        for dev in ("h0", "h1"):
            # 2 x 64 KiB in both directions on two connections: dozens of frames each way at least.
            assert _redirects(topo, dev)[0][1] - before[dev][0][1] >= 20
        # Without the client side's redirect, the hub swallows the client's frames: no connection.
        hub.tc("del", "ingress", topo.index("h0"))
        for version in (4, 6):
            with pytest.raises(OSError):
                _exchange(topo, version, timeout_s=1)
    assert _root_state() == root


def test_a_classifier_the_kernel_lacks_is_named_with_the_options_the_feature_needs():
    # This kernel has no CONFIG_NET_CLS_MATCHALL (the lab's has): ask for it as the redirect asks for u32.
    with build(load_topology("tc-redirect")) as topo:
        try:
            FEATURE.tc(topo.ipr("hub"), "probe", "add-filter", "matchall", topo.index("h0"), parent=INGRESS_HANDLE)
        except OSError as exc:
            assert exc.strerror.startswith("probe: No such file or directory (needs CONFIG_NET_SCH_INGRESS, ")
            assert "CONFIG_NET_ACT_MIRRED" in exc.strerror
        else:
            pytest.skip("this kernel has cls_matchall")
