"""What this kernel and this process can do: device kinds and modes, topology features, privileges, facts.

``probe_kinds`` tries every kind of the registry (topology/kinds/) in every
mode for real, each with the sample its module gives, in a scratch namespace
named and ledgered like any run's (``vdp-{rid}-probe``, its identity
journalled) and always removed if it was created here, never when the name
turned out to be taken; kinds that need a parent are tried on one of the first
carrier kind (a veth) inside that namespace. ``probe_features`` lets every
topology feature (topology/features/) try itself the same way, in a scratch
namespace of its own, on a veth pair that is up with addresses: forwarding
writes that namespace's sysctls, route adds routes there, and so on; the root
namespace is never touched.
Nothing here prints.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from pyroute2 import IPRoute
from pyroute2.ethtool import Ethtool
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from vdevperf.errors import PrivilegeError, VdevperfError
from vdevperf.model import DeviceSpec
from vdevperf.signals import held
from vdevperf.topology import features, naming, netns
from vdevperf.topology.kinds import Kind, kind_of, registry
from vdevperf.topology.ledger import Identity, Ledger, create_namespace
from vdevperf.topology.offload import GroupState, group_states

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
_PROBE_NS = "probe"
_PARENT, _SCRATCH = "p0", "t0"
# The veth pair features try themselves on; one subnet per end, both versions (RFC 2544/5180 ranges).
_FEATURE_DEV = "f0"
_FEATURE_ADDRESSES = (("198.18.252.1/24", "2001:2:0:fc::1/64"), ("198.18.255.1/24", "2001:2:0:ff::1/64"))


@dataclass(frozen=True)
class KindSupport:
    """Whether one kind (in one mode, if it has modes) can be created here, and why not."""

    kind: str
    mode: str | None
    supported: bool
    reason: str
    # Offload features a fresh device of this kind starts with (first mode only).
    features: dict[str, GroupState] | None = None


@dataclass(frozen=True)
class FeatureSupport:
    """Whether one topology feature works here (tried for real), and why not."""

    feature: str
    supported: bool
    reason: str


@dataclass(frozen=True)
class KernelFacts:
    """Facts about the running system that a result should record."""

    release: str
    cpu_count: int
    cpu_model: str
    congestion_control: str


def _effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def has_privileges() -> bool:
    """True if this process has CAP_NET_ADMIN and CAP_SYS_ADMIN (netns, mounts, links)."""
    caps = _effective_caps()
    return bool(caps & (1 << CAP_NET_ADMIN)) and bool(caps & (1 << CAP_SYS_ADMIN))


def require_privileges(what: str) -> None:
    """Raise PrivilegeError naming ``what`` unless has_privileges()."""
    if not has_privileges():
        raise PrivilegeError(
            what, "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create namespaces and devices; run it with sudo"
        )


def _reason(exc: NetlinkError | OSError, config: str) -> str:
    code = exc.code if isinstance(exc, NetlinkError) else exc.errno
    if code == errno.EOPNOTSUPP:
        return f"not supported by this kernel ({config})" if config else "not supported by this kernel"
    if code is None:
        return str(exc)
    where = f": {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
    return f"{os.strerror(code)}{where} (errno {code})"


class _ProbeView:
    """The kinds' View over the probe's scratch devices: all in one namespace, looked up as made."""

    def __init__(self, ipr: IPRoute, run_id: str, devices: tuple[DeviceSpec, ...]) -> None:
        self._ipr = ipr
        self._run_id = run_id
        self._devices = {dev.name: dev for dev in devices}

    def device(self, name: str) -> DeviceSpec:
        return self._devices[name]

    def ifname(self, name: str) -> str:
        return naming.ifname(self._run_id, name)

    def netns_fd(self, short: str) -> int:
        raise AssertionError(f"a probe sample names namespace '{short}': samples stay in the probe's own")

    def index(self, name: str) -> int:
        return int(self._ipr.link_lookup(ifname=self.ifname(name))[0])


def _try(view: _ProbeView, ipr: IPRoute, dev: DeviceSpec) -> tuple[bool, str]:
    kind = kind_of(dev)
    try:
        ipr.link("add", **kind.request(dev, view).args)
    except NetlinkError as exc:
        return False, _reason(exc, kind.config)
    return True, "ok"


def _delete(ipr: IPRoute, ifname: str) -> None:
    for index in ipr.link_lookup(ifname=ifname):
        ipr.link("del", index=index)


def _features(tool: Ethtool, ifname: str) -> dict[str, GroupState] | None:
    try:
        return group_states(tool.get_features(ifname).features)
    except OSError:
        return None


def _carrier(ipr: IPRoute, run_id: str, name: str = _PARENT) -> tuple[Kind, tuple[DeviceSpec, ...]]:
    """Create a sample of the first carrier kind (a veth pair) named ``name``: the parent stacked
    samples sit on, or the devices features try themselves on; none if this kernel could not make it."""
    kind = next(k for k in registry().values() if k.carrier)
    devices = kind.sample(name, _PROBE_NS, kind.default_mode, "")
    ok, _ = _try(_ProbeView(ipr, run_id, devices), ipr, devices[0])
    return kind, devices if ok else ()


def _probe_in(ipr: IPRoute, tool: Ethtool, run_id: str) -> list[KindSupport]:
    carrier, parents = _carrier(ipr, run_id)
    scratch = naming.ifname(run_id, _SCRATCH)
    results = []
    for kind in registry().values():
        for mode in kind.modes or (None,):
            devices = kind.sample(_SCRATCH, _PROBE_NS, mode, _PARENT)
            if any(dev.parent is not None for dev in devices) and not parents:
                results.append(KindSupport(kind.name, mode, False, f"not tried: needs a {carrier.name} parent"))
                continue
            ok, reason = _try(_ProbeView(ipr, run_id, devices + parents), ipr, devices[0])
            features = _features(tool, scratch) if ok and mode == kind.default_mode else None
            if ok:
                _delete(ipr, scratch)
            results.append(KindSupport(kind.name, mode, ok, reason, features))
    return results


@contextmanager
def _scratch() -> Iterator[tuple[IPRoute, int, str]]:
    """A scratch namespace of ours: its IPRoute, an fd on it and the run id its names carry."""
    require_privileges("probe")
    ledger = Ledger.create(topology="probe")
    name = naming.netns_name(ledger.run_id, _PROBE_NS)
    fd = ipr = None
    identity: Identity | None = None
    try:
        try:
            identity = create_namespace(ledger, name)
        except FileExistsError:
            raise VdevperfError(f"namespace {name}", "exists already (not created by this probe); left alone") from None
        fd = netns.open_fd(name)
        with netns.entered(fd):
            ipr = IPRoute(groups=0)
        yield ipr, fd, ledger.run_id
    finally:
        # Same rule as a topology's teardown: a second signal must not cut it short.
        with held():
            if ipr is not None:
                ipr.close()
            if fd is not None:
                os.close(fd)
            # Only the namespace created here, and only while it is still that one.
            if identity is not None and Identity.of(netns.path(name)) == identity:
                netns.remove(name)
            ledger.remove()


def probe_kinds() -> list[KindSupport]:
    """Try to create every device kind in every mode; one KindSupport per (kind, mode)."""
    with _scratch() as (ipr, fd, run_id):
        with netns.entered(fd):
            tool = Ethtool()
        try:
            return _probe_in(ipr, tool, run_id)
        finally:
            tool.close()


class _FeatureView(_ProbeView):
    """The features' View over the probe's scratch namespace, the only one it knows."""

    def __init__(self, ipr: IPRoute, fd: int, run_id: str, devices: tuple[DeviceSpec, ...]) -> None:
        super().__init__(ipr, run_id, devices)
        self._fd = fd

    def _only(self, short: str) -> None:
        if short != _PROBE_NS:
            raise AssertionError(f"a feature's probe names namespace '{short}': probes stay in the probe's own")

    def ipr(self, short: str) -> Any:
        self._only(short)
        return self._ipr

    def netns_fd(self, short: str) -> int:
        self._only(short)
        return self._fd

    def sysctl(self, short: str, key: str, value: str) -> None:
        with netns.entered(self.netns_fd(short)):
            netns.write_sysctl(key, value)


def _feature_devices(ipr: IPRoute, run_id: str) -> tuple[Kind, tuple[DeviceSpec, ...]]:
    """The scratch veth pair features try themselves on, up with addresses; none if it cannot be made."""
    kind, devices = _carrier(ipr, run_id, _FEATURE_DEV)
    if not devices:
        return kind, ()
    ready = []
    for dev, addresses in zip(devices, _FEATURE_ADDRESSES, strict=False):
        index = ipr.link_lookup(ifname=naming.ifname(run_id, dev.name))[0]
        ipr.link("set", index=index, state="up")
        added = []
        for iface in (ipaddress.ip_interface(a) for a in addresses):
            try:
                flags = IFA_F_NODAD if iface.version == 6 else 0
                ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen, flags=flags)
            except NetlinkError:
                if iface.version == 4:
                    raise
                continue  # IPv6 disabled here: features try themselves on IPv4 alone.
            added.append(iface)
        ready.append(replace(dev, addresses=tuple(added)))
    return kind, tuple(ready)


def probe_features() -> list[FeatureSupport]:
    """Let every topology feature try itself in a scratch namespace; one FeatureSupport per feature."""
    with _scratch() as (ipr, fd, run_id):
        carrier, devices = _feature_devices(ipr, run_id)
        scratch = features.Scratch(_PROBE_NS, devices)
        view = _FeatureView(ipr, fd, run_id, devices)
        results = []
        for key, feature in features.registry().items():
            if not devices:
                results.append(FeatureSupport(key, False, f"not tried: needs a {carrier.name} pair"))
                continue
            try:
                tried = feature.probe(view, scratch)
            except (NetlinkError, OSError) as exc:
                results.append(FeatureSupport(key, False, _reason(exc, feature.config)))
                continue
            results.append(FeatureSupport(key, tried, "ok" if tried else "not tried: its module has no probe"))
        return results


def _cpu_model() -> str:
    # x86 says "model name"; arm64 "Model" or "Hardware"; ppc "cpu"; riscv "uarch".
    keys = ("model name", "Model", "Hardware", "cpu", "uarch")
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key in keys and key not in found and value.strip():
                    found[key] = value.strip()
    except OSError:
        return "unknown"
    return next((found[k] for k in keys if k in found), "unknown")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def kernel_facts() -> KernelFacts:
    """Kernel release, CPU count and model, and the default TCP congestion control."""
    return KernelFacts(
        release=os.uname().release,
        cpu_count=os.cpu_count() or 1,
        cpu_model=_cpu_model(),
        # New namespaces start with the root namespace's choice, so this is the one the runs use.
        congestion_control=_read("/proc/sys/net/ipv4/tcp_congestion_control"),
    )


def doctor_report() -> str:
    """Privileges, kernel facts and, when privileged, kind and feature support, as lines of text."""
    facts = kernel_facts()
    lines = [
        f"kernel: {facts.release}",
        f"cpus: {facts.cpu_count} x {facts.cpu_model}",
        f"tcp congestion control: {facts.congestion_control}",
    ]
    if not has_privileges():
        lines.append(
            "privileges: missing CAP_NET_ADMIN and/or CAP_SYS_ADMIN; run as root to probe device kinds and features"
        )
        return "\n".join(lines)
    lines.append("privileges: ok")
    for support in probe_kinds():
        label = support.kind if support.mode is None else f"{support.kind} mode {support.mode}"
        lines.append(f"{label}: {'ok' if support.supported else support.reason}")
        if support.features:
            lines.append(
                "    offloads: "
                + ", ".join(
                    f"{name} {'on' if state.active else 'off'}{' [fixed]' if state.fixed else ''}"
                    for name, state in support.features.items()
                )
            )
    for feature in probe_features():
        lines.append(f"feature {feature.feature}: {'ok' if feature.supported else feature.reason}")
    return "\n".join(lines)
