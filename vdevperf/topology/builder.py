"""Build a TopologySpec into real namespaces and devices, and tear it down.

``build(spec)`` returns a ready Topology, to be used as a context manager:

    with build(load_topology("veth")) as topo:
        with netns.entered(topo.netns_fd(topo.server.netns)):
            ...

Order of work: check privileges; reserve a run id with a ledger; for each
namespace, record it in the ledger, create it, and journal its identity (a
name that exists already is someone else's and leaves the ledger again, see
ledger.py); open one IPRoute per
namespace (inside it, no fork); bring ``lo`` up; create devices, each with
the request its kind's module in kinds/ makes (veth pairs once per pair,
stacked devices in their parent's namespace and moved into their own by the
same request); enslave and bring every device up; add addresses; then wait
until no address is tentative and a real TCP connection from the client to
the server works on every IP version both have.

Teardown closes the netlink sockets and fds and removes the namespaces it
created (each while its identity is still the journalled one), which removes
every link (each lives in one of them, veth peers die with their other end);
then the ledger goes. It runs on normal exit and on any exception, with
SIGINT and SIGTERM blocked so a second signal cannot cut it short; every step
runs even if one before it failed (cleanup.tear_down, which scale uses too). A
build that fails part way tears down what it made before raising.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import time
from dataclasses import dataclass
from types import TracebackType

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from vdevperf.errors import TopologyError, UnsupportedKind
from vdevperf.model import DeviceSpec, EndpointSpec, TopologySpec
from vdevperf.signals import held
from vdevperf.topology import features, naming, netns
from vdevperf.topology.cleanup import tear_down
from vdevperf.topology.kinds import kind_of
from vdevperf.topology.ledger import Ledger, create_namespace
from vdevperf.topology.probe import require_privileges

READY_TIMEOUT_S = 5.0
_READY_POLL_S = 0.02
IFA_F_NODAD = 0x02
IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08


@dataclass(frozen=True)
class Site:
    """Where one load endpoint runs: short namespace name, its path, its addresses."""

    netns: str
    netns_path: str
    ipv4: str | None
    ipv6: str | None
    # Where peers connect when a NAT publishes this end (EndpointSpec.published_ipv4/6).
    published_ipv4: str | None = None
    published_ipv6: str | None = None

    def address(self, family: int) -> str | None:
        """The address for IP version 4 or 6."""
        return self.ipv4 if family == 4 else self.ipv6

    def target(self, family: int) -> str | None:
        """The address peers connect to for IP version 4 or 6: the published one, else its own."""
        return (self.published_ipv4 if family == 4 else self.published_ipv6) or self.address(family)


def creation_order(spec: TopologySpec) -> list[DeviceSpec]:
    """Devices in the order to create them: parents before stacked devices, one end per veth pair."""
    done: set[str] = set()
    order: list[DeviceSpec] = []
    pending = list(spec.devices)
    while pending:
        ready = [d for d in pending if d.parent is None or d.parent in done]
        if not ready:
            raise TopologyError(f"topology {spec.name}", "devices have a parent cycle")
        for dev in ready:
            pending.remove(dev)
            done.add(dev.name)
            # A pair (veth) is one request: the second end is created with the first.
            if dev.peer is not None and dev.peer in done:
                continue
            order.append(dev)
    return order


class Topology:
    """A built topology: namespaces, fds, netlink sockets and the run's ledger."""

    def __init__(self, spec: TopologySpec, ledger: Ledger) -> None:
        self.spec = spec
        self.ledger = ledger
        self.run_id = ledger.run_id
        self.client = self._site(spec.client)
        self.server = self._site(spec.server)
        self._fds: dict[str, int] = {}
        self._iprs: dict[str, IPRoute] = {}
        self._index: dict[str, int] = {}
        self._closed = False

    @property
    def what(self) -> str:
        """How errors name this topology."""
        return f"topology {self.spec.name}"

    def _site(self, end: EndpointSpec) -> Site:
        return Site(
            end.netns,
            self.netns_path(end.netns),
            None if end.ipv4 is None else str(end.ipv4),
            None if end.ipv6 is None else str(end.ipv6),
            None if end.published_ipv4 is None else str(end.published_ipv4),
            None if end.published_ipv6 is None else str(end.published_ipv6),
        )

    def netns_name(self, short: str) -> str:
        """The real name of topology namespace ``short``."""
        return naming.netns_name(self.run_id, short)

    def netns_path(self, short: str) -> str:
        """The bind-mount path of topology namespace ``short``."""
        return netns.path(self.netns_name(short))

    def netns_fd(self, short: str) -> int:
        """An open fd on topology namespace ``short`` (owned by the Topology, closed at teardown)."""
        return self._fds[short]

    def ifname(self, dev: str) -> str:
        """The real interface name of topology device ``dev``."""
        return naming.ifname(self.run_id, dev)

    def ipr(self, short: str) -> IPRoute:
        """The IPRoute bound to topology namespace ``short``."""
        return self._iprs[short]

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- build

    def _build(self) -> None:
        for short in self.spec.namespaces:
            self._add_namespace(short)
        for dev in creation_order(self.spec):
            self._create(dev)
        for dev in self.spec.devices:
            self._configure(dev)
        self._apply_features()
        self._wait_ready()

    def _add_namespace(self, short: str) -> None:
        name = self.netns_name(short)
        try:
            create_namespace(self.ledger, name)
            self._fds[short] = fd = netns.open_fd(name)
            with netns.entered(fd):
                # Only our own namespace's sysctls: the default devconf applies to every link
                # created here later. No DAD: addresses are unique by construction (spec.py)
                # and link-local ones would otherwise stay tentative for a second or two.
                netns.write_sysctl("net/ipv6/conf/all/accept_dad", "0")
                netns.write_sysctl("net/ipv6/conf/default/accept_dad", "0")
                # groups=0: no multicast subscriptions, this socket only sends requests.
                self._iprs[short] = ipr = IPRoute(groups=0)
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        except (OSError, NetlinkError) as exc:
            raise TopologyError(self.what, f"namespace '{name}': {_strerror(exc)}") from exc

    def _lookup(self, dev: DeviceSpec) -> None:
        found = self.ipr(dev.netns).link_lookup(ifname=self.ifname(dev.name))
        if not found:
            raise TopologyError(self.what, f"device '{dev.name}' vanished after creation")
        self._index[dev.name] = found[0]

    def device(self, name: str) -> DeviceSpec:
        """The topology's device ``name`` (for the kinds' requests, kinds.View)."""
        return self.spec.device(name)

    def index(self, name: str) -> int:
        """The ifindex of device ``name``, created already, in its own namespace."""
        return self._index[name]

    def _create(self, dev: DeviceSpec) -> None:
        # The kind decides the request and the namespace it goes to (a stacked device is made
        # next to its parent and placed into its own namespace by the same request).
        kind = kind_of(dev)
        request = kind.request(dev, self)
        try:
            self.ipr(request.netns).link("add", **request.args)
        except NetlinkError as exc:
            # EOPNOTSUPP is rtnetlink's answer for a kind it has no driver for
            # (an unknown mode of a known kind is EINVAL), so the mode is not named.
            if exc.code == errno.EOPNOTSUPP:
                raise UnsupportedKind(self.what, dev.kind, kind.config) from exc
            raise TopologyError(
                self.what, f"device '{dev.name}' ({dev.kind}): cannot create: {_strerror(exc)}"
            ) from exc
        for name in request.creates:
            self._lookup(self.spec.device(name))

    def _configure(self, dev: DeviceSpec) -> None:
        ipr = self.ipr(dev.netns)
        index = self._index[dev.name]
        step = "bring up"
        try:
            # Enslaving and bringing up in one request: one round trip per device.
            if dev.master is not None:
                step = f"enslave to '{dev.master}' and bring up"
                ipr.link("set", index=index, master=self._index[dev.master], state="up")
            else:
                ipr.link("set", index=index, state="up")
            for iface in dev.addresses:
                step = f"add address {iface}"
                ipr.addr(
                    "add",
                    index=index,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    flags=IFA_F_NODAD if iface.version == 6 else 0,
                )
        except NetlinkError as exc:
            raise TopologyError(self.what, f"device '{dev.name}': cannot {step}: {_strerror(exc)}") from exc

    def sysctl(self, short: str, key: str, value: str) -> None:
        """Write ``/proc/sys/<key>`` inside namespace ``short`` (features.View): only our own namespaces."""
        with netns.entered(self.netns_fd(short)):
            netns.write_sysctl(key, value)

    def _apply_features(self) -> None:
        # Feature by feature in the registry's order (forwarding before routes before rules).
        for key, feature in features.registry().items():
            specs = [spec for spec in self.spec.features if spec.feature == key]
            if not specs:
                continue
            try:
                feature.apply(specs, self)
            except (OSError, NetlinkError) as exc:
                raise TopologyError(self.what, f"{key}: cannot apply: {_strerror(exc)}") from exc

    def _tentative(self) -> list[str]:
        bad = []
        for short, ipr in self._iprs.items():
            for msg in ipr.get_addr(family=socket.AF_INET6):
                flags = msg.get("IFA_FLAGS") or msg["flags"]
                if flags & IFA_F_DADFAILED:
                    raise TopologyError(
                        self.what,
                        f"address {msg.get('IFA_ADDRESS')} in namespace '{short}' failed duplicate address detection",
                    )
                if flags & IFA_F_TENTATIVE:
                    bad.append(f"{msg.get('IFA_ADDRESS')} in namespace '{short}' is still tentative")
        return bad

    def _connect_once(self, version: int, timeout_s: float) -> str | None:
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        server_addr = self.server.address(version)
        target = self.server.target(version)
        client_addr = self.client.address(version)
        with netns.entered(self.netns_fd(self.server.netns)):
            listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.bind((server_addr, 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            with netns.entered(self.netns_fd(self.client.netns)):
                conn = socket.socket(family, socket.SOCK_STREAM)
            try:
                conn.bind((client_addr, 0))
                conn.settimeout(timeout_s)
                conn.connect((target, port))
                listener.settimeout(timeout_s)
                listener.accept()[0].close()
            finally:
                conn.close()
        except OSError as exc:
            shown = f"[{target}]" if version == 6 else str(target)
            if target != server_addr:
                shown += f" (published for {server_addr})"
            return (
                f"TCP from [client] in '{self.client.netns}' to {shown} in '{self.server.netns}' "
                f"failed: {exc.strerror or exc}"
            )
        finally:
            listener.close()
        return None

    def _wait_ready(self) -> None:
        versions = [v for v in (4, 6) if self.client.address(v) and self.server.address(v)]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            problems = self._tentative()
            if not problems:
                for version in versions:
                    remaining = deadline - time.monotonic()
                    problem = self._connect_once(version, max(0.05, min(1.0, remaining)))
                    if problem:
                        problems.append(problem)
                        break
                else:
                    return
                # The connection that worked need not be retried.
                versions = versions[versions.index(version) :]
            if time.monotonic() >= deadline:
                raise TopologyError(self.what, f"not ready after {READY_TIMEOUT_S:g} s: {problems[0]}")
            time.sleep(_READY_POLL_S)

    # ---- teardown

    def close(self) -> None:
        """Tear everything down: sockets, fds, namespaces (with their links), then the ledger."""
        if self._closed:
            return
        # Held from here: a signal between marking closed and tearing down would skip teardown.
        with held():
            self._closed = True
            closers = [ipr.close for ipr in self._iprs.values()]
            closers += [functools.partial(os.close, fd) for fd in self._fds.values()]
            self._iprs.clear()
            self._fds.clear()
            tear_down(self.ledger, closers, lambda why: TopologyError(self.what, why))


def _strerror(exc: BaseException) -> str:
    if isinstance(exc, NetlinkError):
        return os.strerror(exc.code) if exc.code else str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def build(spec: TopologySpec, run_id: str | None = None) -> Topology:
    """Build ``spec`` and return the ready Topology; use it as a context manager to tear it down."""
    what = f"topology {spec.name}"
    require_privileges(what)
    try:
        ledger = Ledger.create(run_id, topology=spec.name)
    except FileExistsError:
        raise TopologyError(what, f"run id '{run_id}' is in use") from None
    except ValueError as exc:
        raise TopologyError(what, str(exc)) from None
    except OSError as exc:
        raise TopologyError(what, f"cannot write the ledger: {_strerror(exc)}") from exc
    topo = Topology(spec, ledger)
    try:
        topo._build()
    except BaseException:
        topo.close()
        raise
    return topo


__all__ = ["Site", "Topology", "build", "creation_order", "READY_TIMEOUT_S"]
