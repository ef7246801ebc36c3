"""Topology files (TOML) to TopologySpec, with every error naming file and field.

The format is documented in ``topologies/README.md``; the bundled files are
package data in ``vdevperf/topologies/``. A topology file is data: nothing in
it is executed. Loading checks everything that can be checked
without a kernel (names, kinds, modes, references between devices, addresses,
prefixes that overlap in one namespace, counts), so that building fails only
for reasons of the running system. What each device kind accepts and requires
comes from its module in ``kinds/``; this parser knows no kind by name. Any problem raises TopologyError(what=<the
file>, why=<one line>).

The file itself is read with care, because its path may name anything: it is
opened non-blocking (a FIFO cannot hang the open), must be a regular file
(fstat: no device such as /dev/zero, no directory) and is read up to a size
cap. Names and descriptions must be printable: they reach terminals, tables
and CSV files.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import os
import stat
import tomllib
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, NoReturn

from vdevperf.errors import TopologyError
from vdevperf.model import (
    MAX_ADDRESSES,
    MAX_DESCRIPTION_CHARS,
    MAX_DEVICES,
    MAX_NAME_CHARS,
    MAX_NAMESPACES,
    NETNS_NAME_RE,
    DeviceSpec,
    EndpointSpec,
    FeatureSpec,
    IPInterface,
    OptionValue,
    TopologySpec,
    is_text,
)
from vdevperf.topology import features, values
from vdevperf.topology.kinds import PARENT, PEER, Kind, described, kind_of, known, registry
from vdevperf.topology.offload import canonical

# Package data, found through importlib.resources: an installed wheel has no source tree to look in.
BUNDLED_DIR: Traversable = importlib.resources.files("vdevperf") / "topologies"
# Shown first, in this order: the reference, then from simplest to most stacked.
_BUNDLED_ORDER = (
    "loopback",
    "veth",
    "routed",
    "tc-redirect",
    "bridge",
    "bridge-nat",
    "macvlan",
    "ipvlan",
    "vxlan",
)

# Top-level keys; each feature (features/) adds its own.
_TOP_KEYS = ("name", "description", "namespaces", "device", "client", "server")
# Keys of every device table; each kind adds its own (kinds/): "mode" if it has modes, and its keys.
_COMMON_KEYS = ("name", "kind", "netns", "mtu", "addresses", "master", "offload")
_ENDPOINT_KEYS = ("netns", "ipv4", "ipv6")
_SERVER_KEYS = (*_ENDPOINT_KEYS, "published_ipv4", "published_ipv6")
# The largest topology file read: bundled ones are under 2 KiB, and MAX_DEVICES devices with
# MAX_ADDRESSES addresses each fit well within it.
MAX_FILE_BYTES = 256 * 1024
# How much of an offending value an error message quotes.
_QUOTED_CHARS = 40
_FILE_TYPES = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def bundled_topologies() -> list[str]:
    """Names of the bundled topologies: the reference ones in a fixed order, then the rest sorted."""
    names = {p.name.removesuffix(".toml") for p in BUNDLED_DIR.iterdir() if p.name.endswith(".toml")}
    first = [n for n in _BUNDLED_ORDER if n in names]
    return first + sorted(names - set(first))


def _label(path: Path | Traversable) -> str:
    rel = os.path.relpath(str(path))
    return str(path) if rel.startswith("..") else rel


def resolve(name_or_path: str) -> tuple[Path | Traversable, str]:
    """The file a topology argument refers to, and the label errors use for it."""
    if "/" in name_or_path or name_or_path.endswith(".toml"):
        return Path(name_or_path), name_or_path
    path = BUNDLED_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise TopologyError(
            name_or_path,
            f"no bundled topology of that name (bundled: {', '.join(bundled_topologies())}); "
            "to load a file, give a path containing '/' or ending in .toml",
        )
    return path, _label(path)


def read_regular(path: Path, label: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes; TopologyError otherwise.

    Opened non-blocking, so that a FIFO fails here instead of waiting for a writer; the type
    comes from fstat of that open file, so a path swapped after a check cannot slip by.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise TopologyError(label, f"cannot read the file: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _FILE_TYPES.get(stat.S_IFMT(mode), "not a regular file")
            raise TopologyError(label, f"cannot read the file: {kind}, not a regular file")
        # Read one byte past the cap: a size fstat does not tell (procfs says 0) is still bounded.
        chunks, size = [], 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise TopologyError(label, f"cannot read the file: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise TopologyError(
            label, f"cannot read the file: larger than {limit // 1024} KiB, the most a topology file may be"
        )
    return b"".join(chunks)


def load_topology(name_or_path: str) -> TopologySpec:
    """Load a bundled topology by name, or a topology file by path."""
    path, label = resolve(name_or_path)
    raw = read_regular(path, label) if isinstance(path, Path) else path.read_bytes()
    return parse_topology(raw, label, default_name=Path(path.name).stem)


def quoted(value: str) -> str:
    """A value as an error quotes it: at most _QUOTED_CHARS characters (VdevperfError escapes the rest)."""
    return repr(value if len(value) <= _QUOTED_CHARS else value[:_QUOTED_CHARS] + "...")


def parse_topology(raw: bytes | str, label: str, default_name: str = "topology") -> TopologySpec:
    """Parse the text of a topology file; ``label`` names it in errors."""
    return _Parser(label).parse(raw, default_name)


def _device_keys() -> tuple[str, ...]:
    """Every key some device table may have: the common ones, then each kind's, in listing order."""
    keys = list(_COMMON_KEYS[:3])
    for kind in registry().values():
        keys += (["mode"] if kind.modes else []) + [key.name for key in kind.keys]
    keys += _COMMON_KEYS[3:]
    return tuple(dict.fromkeys(keys))


class _Parser:
    """One parse of one file; ``fail`` raises with the file named."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, why: str) -> NoReturn:
        raise TopologyError(self.label, why)

    def parse(self, raw: bytes | str, default_name: str) -> TopologySpec:
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            self.fail(f"cannot read the file: not UTF-8 text (byte {exc.start})")
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            self.fail(f"TOML syntax error: {exc}")
        except RecursionError:
            self.fail("TOML syntax error: arrays or tables nested too deeply")
        self.check_keys(doc, (*_TOP_KEYS, *features.registry()), "top level")
        if "name" in doc:
            name = self.text(doc["name"], "'name'", MAX_NAME_CHARS, shortest=1)
        else:
            name = self.text(default_name, "'name' (by default the file name)", MAX_NAME_CHARS, shortest=1)
        description = self.text(doc.get("description", ""), "'description'", MAX_DESCRIPTION_CHARS)
        namespaces = self.namespaces(doc)
        tables = self.typed(doc.get("device", []), list, "'device' (write each as [[device]])")
        if len(tables) > MAX_DEVICES:
            self.fail(f"{len(tables)} devices; a topology has at most {MAX_DEVICES}")
        devices = tuple(self.device(i, t) for i, t in enumerate(tables))
        self.check_devices(devices, namespaces)
        client = self.endpoint(doc, "client", namespaces, devices)
        server = self.endpoint(doc, "server", namespaces, devices)
        self.check_endpoint_pair(client, server)
        draft = features.Draft(namespaces, {dev.name: dev for dev in devices})
        found: list[FeatureSpec] = []
        for key, feature in features.registry().items():
            if key in doc:
                try:
                    found += feature.parse(doc[key], draft)
                except ValueError as exc:
                    self.fail(str(exc))
        try:
            return TopologySpec(
                name=name,
                namespaces=namespaces,
                devices=devices,
                client=client,
                server=server,
                description=description,
                source=self.label,
                features=tuple(found),
            )
        except ValueError as exc:
            self.fail(str(exc))

    def check_keys(self, table: dict, known: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in known:
                self.fail(f"{where}: unknown key '{key}' (known: {', '.join(known)})")

    def text(self, value: Any, where: str, longest: int, shortest: int = 0) -> str:
        """A string of printable characters (no control or format characters), of bounded length."""
        self.typed(value, str, where)
        if not is_text(value, longest, shortest):
            size = f"{shortest}-{longest}" if shortest else f"at most {longest}"
            self.fail(f"{where} must be {size} printable characters (no control characters), not {quoted(value)}")
        return value

    def typed(self, value: Any, kind: type, where: str) -> Any:
        try:
            return values.typed(value, kind, where)
        except ValueError as exc:
            self.fail(str(exc))

    def namespaces(self, doc: dict) -> tuple[str, ...]:
        if "namespaces" not in doc:
            self.fail("missing key 'namespaces' (a list of short namespace names)")
        names = self.typed(doc["namespaces"], list, "'namespaces'")
        if not names:
            self.fail("'namespaces' is empty; a topology needs at least one namespace")
        if len(names) > MAX_NAMESPACES:
            self.fail(f"'namespaces' lists {len(names)}; a topology has at most {MAX_NAMESPACES}")
        seen: list[str] = []
        for name in names:
            self.typed(name, str, "each entry of 'namespaces'")
            if not NETNS_NAME_RE.match(name):
                self.fail(f"namespace name '{name}' must be 1-6 lowercase letters/digits, starting with a letter")
            if name in seen:
                self.fail(f"namespace '{name}' is declared twice")
            seen.append(name)
        return tuple(seen)

    def device(self, index: int, table: Any) -> DeviceSpec:
        where = f"device #{index + 1}"
        self.typed(table, dict, where)
        if "name" in table:
            name = self.typed(table["name"], str, f"{where}: name")
            where = f"device '{name}'"
        self.check_keys(table, _device_keys(), where)
        for key in ("name", "kind", "netns"):
            if key not in table:
                self.fail(f"{where}: missing key '{key}'")
        kind_name = self.typed(table["kind"], str, f"{where}: kind")
        kind = registry().get(kind_name)
        if kind is None:
            self.fail(f"{where}: unknown kind '{kind_name}' (known: {known()})")
        netns = self.typed(table["netns"], str, f"{where}: netns")
        master = self.typed(table["master"], str, f"{where}: master") if "master" in table else None
        mtu = self.typed(table["mtu"], int, f"{where}: mtu") if "mtu" in table else None
        mode = self.mode(table, kind, where)
        values = self.kind_keys(table, kind, where)
        # The two relations are DeviceSpec fields (the builder orders by them); the rest are options.
        peer, parent = values.pop(PEER.name, None), values.pop(PARENT.name, None)
        addresses = self.addresses(table.get("addresses", []), where)
        offload = self.offload(table.get("offload", {}), where)
        try:
            dev = DeviceSpec(
                name=table["name"],
                kind=kind.name,
                netns=netns,
                mode=mode,
                parent=None if parent is None else str(parent),
                peer=None if peer is None else str(peer),
                master=master,
                mtu=mtu,
                addresses=addresses,
                offload=offload,
                options=tuple((key, value) for key, value in values.items() if value is not None),
            )
            kind.check(dev)
        except ValueError as exc:
            self.fail(str(exc))
        return dev

    def mode(self, table: dict, kind: Kind, where: str) -> str | None:
        if "mode" not in table:
            return kind.default_mode
        mode = self.typed(table["mode"], str, f"{where}: mode")
        if not kind.modes:
            self.fail(f"{where}: kind '{kind.name}' takes no mode")
        if mode not in kind.modes:
            self.fail(f"{where}: mode '{mode}' is not one of {', '.join(kind.modes)} for kind '{kind.name}'")
        return mode

    def kind_keys(self, table: dict, kind: Kind, where: str) -> dict[str, OptionValue | None]:
        """The values of the kind's own keys, their defaults where absent; a key of another kind fails."""
        for key in table:
            if key not in _COMMON_KEYS and key != "mode" and kind.key(key) is None:
                owners = [other for other in registry().values() if other.key(key) is not None]
                if len(owners) == 1:
                    self.fail(f"{where}: only {described(owners)} has a {key}")
                self.fail(f"{where}: kind '{kind.name}' takes no {key}")
        values: dict[str, OptionValue | None] = {}
        for key in kind.keys:
            present = key.name in table
            values[key.name] = self.typed(table[key.name], key.type, f"{where}: {key.name}") if present else key.default
        return values

    def offload(self, table: Any, where: str) -> tuple[tuple[str, bool], ...]:
        self.typed(table, dict, f"{where}: offload")
        settings = []
        for name, value in table.items():
            try:
                feature = canonical(name)
            except ValueError as exc:
                self.fail(f"{where}: offload: {exc}")
            if value not in (True, False, "on", "off"):
                self.fail(f'{where}: offload {name} = {value!r}: use true/false or "on"/"off"')
            settings.append((feature, value in (True, "on")))
        return tuple(settings)

    def addresses(self, values: Any, where: str) -> tuple[IPInterface, ...]:
        self.typed(values, list, f"{where}: addresses")
        if len(values) > MAX_ADDRESSES:
            self.fail(f"{where}: {len(values)} addresses; a device has at most {MAX_ADDRESSES}")
        result = []
        for value in values:
            self.typed(value, str, f"{where}: each address")
            if "/" not in value:
                self.fail(f"{where}: address '{value}' needs a prefix length, e.g. '{value}/24' or '{value}/64'")
            try:
                iface = ipaddress.ip_interface(value)
            except ValueError:
                self.fail(f"{where}: '{value}' is not a valid IPv4 or IPv6 address with prefix length")
            if iface.ip.is_loopback:
                # The local routing table sends it to lo whatever device holds it.
                self.fail(
                    f"{where}: address {iface} is a loopback address, which every namespace has on lo; "
                    "traffic to it would never cross the device"
                )
            result.append(iface)
        return tuple(result)

    def check_devices(self, devices: tuple[DeviceSpec, ...], namespaces: tuple[str, ...]) -> None:
        by_name: dict[str, DeviceSpec] = {}
        for dev in devices:
            if dev.name in by_name:
                self.fail(f"device name '{dev.name}' is used twice")
            by_name[dev.name] = dev
        for dev in devices:
            if dev.netns not in namespaces:
                self.fail(
                    f"device '{dev.name}': namespace '{dev.netns}' is not declared (declared: {', '.join(namespaces)})"
                )
        # Masters first: the kinds' rules on peers and parents may then rely on every master being one.
        for dev in devices:
            self.check_master(dev, by_name)
        for dev in devices:
            try:
                kind_of(dev).check_links(dev, by_name)
            except ValueError as exc:
                self.fail(str(exc))
        self.check_unique_addresses(devices)
        self.check_overlaps(devices)

    def check_master(self, dev: DeviceSpec, by_name: dict[str, DeviceSpec]) -> None:
        if dev.master is None:
            return
        where = f"device '{dev.name}'"
        master = by_name.get(dev.master)
        if master is None:
            self.fail(f"{where}: master '{dev.master}' is not a device of this topology")
        kind = kind_of(master)
        if not kind.has_ports:
            masters = [k for k in registry().values() if k.has_ports]
            self.fail(f"{where}: master '{master.name}' is a {master.kind}, not {described(masters)}")
        try:
            kind.check_port(dev, master)
        except ValueError as exc:
            self.fail(str(exc))

    def check_unique_addresses(self, devices: tuple[DeviceSpec, ...]) -> None:
        owner: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
        for dev in devices:
            for iface in dev.addresses:
                if iface.ip in owner:
                    self.fail(
                        f"device '{dev.name}': address {iface.ip} is already assigned to "
                        f"device '{owner[iface.ip]}'; addresses must be unique in a topology"
                    )
                owner[iface.ip] = dev.name

    def check_overlaps(self, devices: tuple[DeviceSpec, ...]) -> None:
        """Two devices of one namespace must not hold overlapping prefixes: the kernel would send
        the test's traffic along whichever route wins, silently measuring another path."""
        held: dict[tuple[str, int], list[tuple[IPInterface, str]]] = {}
        for dev in devices:
            for iface in dev.addresses:
                others = held.setdefault((dev.netns, iface.version), [])
                for other, owner in others:
                    if owner != dev.name and other.network.overlaps(iface.network):
                        self.fail(
                            f"device '{dev.name}': {iface} overlaps {other} of device '{owner}' in namespace "
                            f"'{dev.netns}'; the route the kernel picks would decide the path measured"
                        )
                others.append((iface, dev.name))

    def endpoint(
        self, doc: dict, role: str, namespaces: tuple[str, ...], devices: tuple[DeviceSpec, ...]
    ) -> EndpointSpec:
        if role not in doc:
            self.fail(f"missing table [{role}] (keys: {', '.join(_ENDPOINT_KEYS)})")
        table = self.typed(doc[role], dict, f"'{role}'")
        self.check_keys(table, _SERVER_KEYS if role == "server" else _ENDPOINT_KEYS, f"[{role}]")
        if "netns" not in table:
            self.fail(f"[{role}]: missing key 'netns'")
        ns = self.typed(table["netns"], str, f"[{role}]: netns")
        if ns not in namespaces:
            self.fail(f"[{role}]: namespace '{ns}' is not declared (declared: {', '.join(namespaces)})")
        present = {iface.ip for dev in devices if dev.netns == ns for iface in dev.addresses}
        addrs: dict[str, Any] = {}
        for key, cls in (("ipv4", ipaddress.IPv4Address), ("ipv6", ipaddress.IPv6Address)):
            if key not in table:
                continue
            text = self.typed(table[key], str, f"[{role}]: {key}")
            try:
                addr = cls(text)
            except ValueError:
                self.fail(
                    f"[{role}]: {key} '{text}' is not an {'IPv4' if key == 'ipv4' else 'IPv6'} "
                    "address (write it without prefix length)"
                )
            # The loopback addresses exist in every namespace.
            if not addr.is_loopback and addr not in present:
                self.fail(f"[{role}]: {key} {addr} is not assigned to any device in namespace '{ns}'")
            addrs[key] = addr
        if role == "server":
            addrs.update(self.published(table, ns, devices))
        try:
            return EndpointSpec(netns=ns, **addrs)
        except ValueError as exc:
            self.fail(f"[{role}]: {exc}")

    def published(self, table: dict, ns: str, devices: tuple[DeviceSpec, ...]) -> dict[str, Any]:
        """The server's published addresses: an address of another namespace that a NAT ([[nat]] dnat)
        forwards to the server; clients connect there."""
        found: dict[str, Any] = {}
        for key in ("published_ipv4", "published_ipv6"):
            if key not in table:
                continue
            where = f"[server]: {key}"
            try:
                addr = values.address(table[key], where)
            except ValueError as exc:
                self.fail(str(exc))
            if addr.version != int(key[-1]):
                self.fail(f"{where} {addr} is not an IPv{key[-1]} address")
            owners = [dev.netns for dev in devices for iface in dev.addresses if iface.ip == addr]
            if not owners:
                self.fail(f"{where} {addr} is not assigned to any device (it is the NAT namespace's address)")
            if ns in owners:
                self.fail(f"{where} {addr} is in the server's own namespace '{ns}'; publish another namespace's")
            found[key] = addr
        return found

    def check_endpoint_pair(self, client: EndpointSpec, server: EndpointSpec) -> None:
        versions = [v for v in (4, 6) if client.address(v) is not None and server.address(v) is not None]
        if not versions:
            self.fail("[client] and [server] share no IP version: give both an ipv4 or both an ipv6 address")
        if client.netns != server.netns:
            for role, end in (("client", client), ("server", server)):
                for v in (4, 6):
                    addr = end.address(v)
                    if addr is not None and addr.is_loopback:
                        self.fail(
                            f"[{role}]: ipv{v} {addr} is a loopback address, which cannot reach "
                            "another namespace; client and server are in different namespaces"
                        )
