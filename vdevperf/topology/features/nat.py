"""nat: nftables masquerade and DNAT inside a namespace, as Docker's default network has them.

Docker puts its containers on a bridge (docker0) with private addresses, masquerades
what they send out of the host (``-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE``) and
publishes a container's port by DNAT of the host's address (``-p``). Each ``[[nat]]``
entry is one of these two rules, in one namespace of the topology (the "host"):

- ``masquerade = "<prefix>"`` with ``out = "<device>"``: packets from that prefix
  leaving by ``out`` get the address of ``out`` as their source. The device is named
  rather than negated as Docker does (any device but the bridge): in a namespace with
  one outside link both select the same packets, and an index compare is exact.
- ``dnat = "<address>"`` with ``to = "<address>"``: TCP and UDP arriving for ``dnat``
  (an address of the namespace, like the host's address) go to ``to`` (on a subnet
  of the namespace, like the container's). Every port is forwarded unchanged, not
  one as ``-p`` does: the load's servers bind port 0 and the kernel picks their port
  at each test, so one fixed published port could not reach them.

The client reaches a server behind a DNAT through the server's published address
(``published_ipv4``/``published_ipv6`` in ``[server]``): it connects there and the
server sees the connection arrive from the client's own address, as a container
does. Its answers, and a TCP_MAERTS stream, go back through the same conntrack entry.

Rules are built with pyroute2's nftables netlink socket (``pyroute2.nftables.main.NFTables``;
0.9 exports it from there only), opened inside the namespace
(sockets keep the namespace they were made in): one table ``vdevperf`` per IP
family used (``ip``, ``ip6``, like iptables and ip6tables), with a ``prerouting``
chain at dstnat priority (-100) and a ``postrouting`` chain at srcnat priority
(100). pyroute2 has no rule builder beyond a few helpers, so the expressions
(payload, cmp, meta, immediate, nat, masq) are written here as the netlink
attributes the kernel reads; no ``nft`` binary is needed. The tables die with the
namespace; the root namespace's ruleset is never opened for writing.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.nfnetlink.nftsocket import Cmp, Meta, Regs
from pyroute2.nftables.expressions import genex
from pyroute2.nftables.main import NFTables

from vdevperf.model import FeatureSpec
from vdevperf.topology import netns, values
from vdevperf.topology.features import Draft, Feature, Scratch, View, entries

KEYS = ("netns", "masquerade", "out", "dnat", "to")
TABLE = "vdevperf"
# Chain name -> (hook, priority): the priorities nft names dstnat and srcnat.
CHAINS = {"prerouting": ("prerouting", -100), "postrouting": ("postrouting", 100)}
# Per IP version: nfgen family, offsets of the source and destination in the network header, address length.
FAMILIES = {4: (socket.AF_INET, 12, 16, 4), 6: (socket.AF_INET6, 8, 24, 16)}
NFT_PAYLOAD_NETWORK_HEADER = 1
NFT_NAT_DNAT = 1
PROTOCOLS = (socket.IPPROTO_TCP, socket.IPPROTO_UDP)


@dataclass(frozen=True)
class Masquerade(FeatureSpec):
    """Packets from ``source`` leaving ``netns`` by device ``out`` take the address of ``out``."""

    source: values.IPNetwork
    out: str


@dataclass(frozen=True)
class Dnat(FeatureSpec):
    """TCP and UDP for ``published`` (an address of ``netns``) go to ``to``, ports unchanged."""

    published: values.IPAddress
    to: values.IPAddress


class NatFeature(Feature):
    key = "nat"
    order = 30
    config = "CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_MASQ, CONFIG_NF_NAT"
    summary = "nftables masquerade and DNAT in a namespace, as Docker's bridge network ([[nat]])"

    def parse(self, value: Any, draft: Draft) -> tuple[FeatureSpec, ...]:
        specs = tuple(self._entry(n, entry, draft) for n, entry in enumerate(entries(value, self.key)))
        published = [(s.netns, s.published) for s in specs if isinstance(s, Dnat)]
        for n, item in enumerate(published):
            if item in published[:n]:
                raise ValueError(f"nat: {item[1]} is published twice in namespace '{item[0]}'")
        return specs

    def _entry(self, n: int, entry: Any, draft: Draft) -> FeatureSpec:
        where = f"nat #{n + 1}"
        table = values.table(entry, where, KEYS, required=("netns",))
        netns_name = draft.namespace(table["netns"], where)
        if ("masquerade" in table) == ("dnat" in table):
            raise ValueError(f"{where}: give either 'masquerade' (with 'out') or 'dnat' (with 'to')")
        mine = [iface for dev in draft.devices.values() if dev.netns == netns_name for iface in dev.addresses]
        if "masquerade" in table:
            if "to" in table:
                raise ValueError(f"{where}: 'to' goes with 'dnat', not 'masquerade'")
            if "out" not in table:
                raise ValueError(f"{where}: missing key 'out' (the device masqueraded packets leave by)")
            source = values.network(table["masquerade"], f"{where}: masquerade")
            out = draft.device_in(table["out"], netns_name, f"{where}: out")
            if not any(iface.version == source.version for iface in out.addresses):
                raise ValueError(
                    f"{where}: device '{out.name}' has no IPv{source.version} address to masquerade {source} with"
                )
            return Masquerade(self.key, netns_name, source, out.name)
        if "out" in table:
            raise ValueError(f"{where}: 'out' goes with 'masquerade', not 'dnat'")
        if "to" not in table:
            raise ValueError(f"{where}: missing key 'to' (the address 'dnat' forwards to)")
        published = values.address(table["dnat"], f"{where}: dnat")
        to = values.address(table["to"], f"{where}: to")
        if published.version != to.version:
            raise ValueError(f"{where}: dnat {published} is IPv{published.version} but to {to} is IPv{to.version}")
        if not any(iface.ip == published for iface in mine):
            raise ValueError(f"{where}: dnat {published} is not an address of namespace '{netns_name}'")
        if any(iface.ip == to for iface in mine) or not any(to in iface.network for iface in mine):
            raise ValueError(
                f"{where}: to {to} must be another host on a subnet of namespace '{netns_name}' (it forwards there)"
            )
        return Dnat(self.key, netns_name, published, to)

    def apply(self, specs: Sequence[FeatureSpec], view: View) -> None:
        # One table per namespace and IP version, as iptables and ip6tables keep theirs apart.
        tables: dict[tuple[str, int], list[Masquerade | Dnat]] = {}
        for spec in specs:
            assert isinstance(spec, Masquerade | Dnat)
            version: int = spec.source.version if isinstance(spec, Masquerade) else spec.published.version
            tables.setdefault((spec.netns, version), []).append(spec)
        for (short, version), rules in tables.items():
            with netns.entered(view.netns_fd(short)):
                nft = NFTables(nfgen_family=FAMILIES[version][0])
            try:
                nft.table("add", name=TABLE)
                for chain, (hook, priority) in CHAINS.items():
                    nft.chain("add", table=TABLE, name=chain, hook=hook, type="nat", priority=priority)
                for rule in rules:
                    if isinstance(rule, Masquerade):
                        nft.rule("add", table=TABLE, chain="postrouting", expressions=_masquerade(rule, view))
                        continue
                    for proto in PROTOCOLS:
                        nft.rule("add", table=TABLE, chain="prerouting", expressions=_dnat_rule(rule, proto))
            finally:
                nft.close()

    # ---- rule expressions, as the netlink attributes of nf_tables (what `nft --debug=netlink` prints)

    def sample(self, scratch: Scratch) -> tuple[FeatureSpec, ...]:
        # Both rule shapes, per IP version of the scratch device: masquerade of its own subnet out of
        # it, and a DNAT of its address to a host next to it (on-link, not one of ours).
        dev = scratch.devices[0]
        rules: list[FeatureSpec] = []
        for iface in dev.addresses:
            rules.append(Masquerade(self.key, scratch.netns, iface.network, dev.name))
            rules.append(Dnat(self.key, scratch.netns, iface.ip, iface.ip + 2))
        return tuple(rules)


def _data(value: bytes) -> dict[str, Any]:
    return {"attrs": [("NFTA_DATA_VALUE", value)]}


def _address_is(address: values.IPAddress, which: str, prefixlen: int | None = None) -> list[Any]:
    """Load the source or destination address into register 1, masked to ``prefixlen``, and compare."""
    _, src_offset, dst_offset, size = FAMILIES[address.version]
    exprs = [
        genex(
            "payload",
            {
                "dreg": Regs.NFT_REG_1,
                "base": NFT_PAYLOAD_NETWORK_HEADER,
                "offset": src_offset if which == "src" else dst_offset,
                "len": size,
            },
        )
    ]
    if prefixlen is not None and prefixlen < size * 8:
        mask = ipaddress.ip_network(f"{address}/{prefixlen}").netmask.packed
        exprs.append(
            genex(
                "bitwise",
                {
                    "sreg": Regs.NFT_REG_1,
                    "dreg": Regs.NFT_REG_1,
                    "len": size,
                    "mask": _data(mask),
                    "xor": _data(bytes(size)),
                },
            )
        )
    exprs.append(genex("cmp", {"sreg": Regs.NFT_REG_1, "op": Cmp.NFT_CMP_EQ, "data": _data(address.packed)}))
    return exprs


def _masquerade(spec: Masquerade, view: View) -> tuple[list[Any], ...]:
    """``<ip|ip6> saddr <source> oif <out> masquerade``."""
    oif = view.index(spec.out).to_bytes(4, sys.byteorder)  # meta oif is in host byte order
    return (
        _address_is(spec.source.network_address, "src", spec.source.prefixlen),
        [
            genex("meta", {"key": Meta.NFT_META_OIF, "dreg": Regs.NFT_REG_1}),
            genex("cmp", {"sreg": Regs.NFT_REG_1, "op": Cmp.NFT_CMP_EQ, "data": _data(oif)}),
            genex("masq", {}),
        ],
    )


def _dnat_rule(spec: Dnat, proto: int) -> tuple[list[Any], ...]:
    """``<ip|ip6> daddr <published> meta l4proto <proto> dnat to <to>`` (ports unchanged)."""
    family = FAMILIES[spec.to.version][0]
    return (
        _address_is(spec.published, "dst"),
        [
            genex("meta", {"key": Meta.NFT_META_L4PROTO, "dreg": Regs.NFT_REG_1}),
            genex("cmp", {"sreg": Regs.NFT_REG_1, "op": Cmp.NFT_CMP_EQ, "data": _data(bytes([proto]))}),
            genex("immediate", {"dreg": Regs.NFT_REG_1, "data": _data(spec.to.packed)}),
            genex("nat", {"type": NFT_NAT_DNAT, "family": family, "reg_addr_min": Regs.NFT_REG_1}),
        ],
    )


FEATURE = NatFeature()
