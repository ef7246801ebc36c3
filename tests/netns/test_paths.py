"""Paths beyond a plain veth, built for real: routes and forwarding act inside our namespaces only, the vxlan overlay
carries its traffic in UDP over its underlay with the MTU the encapsulation leaves."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from vdevperf.topology import netns
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology


def _sysctl_in(topo, short: str, key: str) -> str:
    with netns.entered(topo.netns_fd(short)):
        return Path(f"/proc/sys/{key}").read_text().strip()


def test_routed_forwards_in_the_router_namespace_only_and_its_routes_carry_the_traffic():
    root = {
        key: Path(f"/proc/sys/{key}").read_text() for key in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")
    }
    with build(load_topology("routed")) as topo:
        assert _sysctl_in(topo, "rtr", "net/ipv4/ip_forward") == "1"
        assert _sysctl_in(topo, "rtr", "net/ipv6/conf/all/forwarding") == "1"
        assert _sysctl_in(topo, "cli", "net/ipv4/ip_forward") == "0"
        for family, gateway in ((socket.AF_INET, "198.18.11.254"), (socket.AF_INET6, "2001:2:0:11::fe")):
            routes = topo.ipr("cli").get_routes(family=family, table=254)
            gateways = {r.get("RTA_GATEWAY") for r in routes if r["dst_len"] == 0}
            assert gateways == {gateway}, routes
        # The client's packets leave through the router: its ingress veth counts them.
        rtr = topo.ipr("rtr")
        before = rtr.get_links(topo.index("r0"))[0].get("IFLA_STATS64")["rx_packets"]
        for version in (4, 6):
            family = socket.AF_INET if version == 4 else socket.AF_INET6
            with netns.entered(topo.netns_fd("srv")):
                server = socket.socket(family, socket.SOCK_STREAM)
            with server:
                server.bind((topo.server.address(version), 0))
                server.listen()
                with netns.entered(topo.netns_fd("cli")):
                    client = socket.create_connection(server.getsockname()[:2], timeout=5)
                with client:
                    conn, peer = server.accept()
                    with conn:
                        # The server sees the client's own address: routed, not NATed.
                        assert peer[0] == topo.client.address(version)
                        client.sendall(b"x" * 65536)
                        got = 0
                        while got < 65536:
                            got += len(conn.recv(65536))
        after = rtr.get_links(topo.index("r0"))[0].get("IFLA_STATS64")["rx_packets"]
        assert after - before >= 10
    assert {key: Path(f"/proc/sys/{key}").read_text() for key in root} == root


def test_vxlan_overlay_leaves_50_bytes_for_encapsulation_and_its_traffic_crosses_the_underlay():
    with build(load_topology("vxlan")) as topo:
        for end, underlay in (("x0", "u0"), ("x1", "u1")):
            ipr = topo.ipr(topo.spec.device(end).netns)
            link = ipr.get_links(topo.index(end))[0]
            assert link.get(("linkinfo", "kind")) == "vxlan"
            assert link.get(("linkinfo", "data", "vxlan_id")) == 42
            assert link.get(("linkinfo", "data", "vxlan_port")) == 4789
            lower = ipr.get_links(topo.index(underlay))[0]
            # 14 (inner Ethernet) + 8 (VXLAN) + 8 (UDP) + 20 (outer IPv4) = 50 bytes of outer headers.
            assert link.get("mtu") == lower.get("mtu") - 50
        srv = topo.ipr("srv")
        before = srv.get_links(topo.index("u1"))[0].get("IFLA_STATS64")["rx_bytes"]
        with netns.entered(topo.netns_fd("srv")):
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with server:
            server.bind((topo.server.address(4), 0))
            server.listen()
            with netns.entered(topo.netns_fd("cli")):
                client = socket.create_connection(server.getsockname()[:2], timeout=5)
            with client:
                conn, _ = server.accept()
                with conn:
                    sender = threading.Thread(target=client.sendall, args=(b"x" * 1_000_000,))
                    sender.start()
                    got = 0
                    while got < 1_000_000:
                        got += len(conn.recv(65536))
                    sender.join()
        after = srv.get_links(topo.index("u1"))[0].get("IFLA_STATS64")["rx_bytes"]
        # Every overlay byte crossed the underlay, inside its outer headers.
        assert after - before > 1_000_000
