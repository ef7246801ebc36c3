"""Docker's bridge with NAT, built for real: the DNAT forwards what the client sends to the host's address
into the container, the container's own connections leave masqueraded behind the host's address, and the
rules live in the host namespace only."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pyroute2.nftables.main import NFTables

from vdevperf.topology import netns
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology

FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
# The host namespace's outside address (device h0), which the client sees.
OUTSIDE = {4: "198.18.21.1", 6: "2001:2:0:21::1"}
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")


def _tables(fd: int | None) -> list[tuple[int, str]]:
    """(family, name) of every nftables table of namespace ``fd`` (None: this process's), read only."""
    found = []
    for family in FAMILIES.values():
        if fd is None:
            nft = NFTables(nfgen_family=family)
        else:
            with netns.entered(fd):
                nft = NFTables(nfgen_family=family)
        try:
            found += [(family, t.get("NFTA_TABLE_NAME")) for t in nft.get_tables()]
        finally:
            nft.close()
    return sorted(set(found))


def _socket(topo, short: str, family: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    with netns.entered(topo.netns_fd(short)):
        sock = socket.socket(family, kind)
    sock.settimeout(5)
    return sock


@pytest.fixture(scope="module")
def topo():
    root = ({key: Path(f"/proc/sys/{key}").read_text() for key in SYSCTLS}, _tables(None))
    with build(load_topology("bridge-nat")) as built:
        yield built
    # Nothing was set in the root namespace, during the build or after the teardown.
    assert ({key: Path(f"/proc/sys/{key}").read_text() for key in SYSCTLS}, _tables(None)) == root


def test_the_rules_live_in_the_host_namespace_only(topo):
    assert _tables(topo.netns_fd("host")) == [(socket.AF_INET, "vdevperf"), (socket.AF_INET6, "vdevperf")]
    assert _tables(topo.netns_fd("ctr")) == _tables(topo.netns_fd("cli")) == []
    with netns.entered(topo.netns_fd("host")):
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"


@pytest.mark.parametrize("version", [4, 6])
def test_the_client_reaches_the_container_through_the_dnat_of_the_hosts_address(topo, version):
    family = FAMILIES[version]
    assert topo.server.target(version) == OUTSIDE[version] != topo.server.address(version)
    with _socket(topo, "ctr", family) as listener, _socket(topo, "cli", family) as client:
        listener.bind((topo.server.address(version), 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        # The client knows only the host's address; no route of its own leads to the container.
        client.connect((OUTSIDE[version], port))
        accepted, peer = listener.accept()
        with accepted:
            # The destination was rewritten (the container accepted it on its own address) and
            # the source was not: the container sees the client, as behind Docker's -p.
            assert peer[0] == topo.client.address(version)
            assert accepted.getsockname()[0] == topo.server.address(version)
            assert client.getpeername()[:2] == (OUTSIDE[version], port)
            accepted.sendall(b"maerts")  # the server sends, as in TCP_MAERTS
            assert client.recv(16) == b"maerts"


@pytest.mark.parametrize("version", [4, 6])
def test_udp_answers_come_back_from_the_published_address(topo, version):
    family = FAMILIES[version]
    with (
        _socket(topo, "ctr", family, socket.SOCK_DGRAM) as server,
        _socket(topo, "cli", family, socket.SOCK_DGRAM) as client,
    ):
        server.bind((topo.server.address(version), 0))
        port = server.getsockname()[1]
        client.connect((OUTSIDE[version], port))  # a connected socket takes answers from there only
        client.send(b"request")
        data, peer = server.recvfrom(16)
        assert (data, peer[0]) == (b"request", topo.client.address(version))
        server.sendto(b"response", peer)
        assert client.recv(16) == b"response"


@pytest.mark.parametrize("version", [4, 6])
def test_the_containers_own_connections_leave_masqueraded_behind_the_hosts_address(topo, version):
    family = FAMILIES[version]
    with _socket(topo, "cli", family) as listener, _socket(topo, "ctr", family) as container:
        listener.bind((topo.client.address(version), 0))
        listener.listen(1)
        container.connect((topo.client.address(version), listener.getsockname()[1]))
        accepted, peer = listener.accept()
        with accepted:
            assert peer[0] == OUTSIDE[version]  # not the container's address
            assert container.getsockname()[0] == topo.server.address(version)
