"""One scale run's namespaces: names, the ledger, the hub namespace, and teardown whatever happens.

Names (naming.py's scheme, run id ``rid``):

- namespace ``i`` (1-based): ``vdp-{rid}-n{i:04d}`` (``n0001``; up to ``n99999``);
- the hub all veth pairs lead to: ``vdp-{rid}-hub``; the contention probe: ``vdp-{rid}-probe``;
- ``vdp-{rid}-mnt{k}``: empty files whose hard links are the namespaces' mount points
  (``netns.create(link_from=...)``: no inode allocated per namespace), one per
  ``LINKS_PER_SOURCE`` namespaces (ext4 allows 65,000 links per inode);
- in namespace ``i``, its veth end ``vdp{rid}e0`` (ifindex 2, the first after lo), address
  ``10.0.0.1 + i``/8; in the hub, the other end ``vdp{rid}h{i:04d}`` and, with ``--bridge``,
  bridge ``vdp{rid}br0`` (ifindex 2, address 10.0.0.1/8).

Every namespace name the run may use is written to the ledger in one write
before the first one is created, and each namespace's identity is journalled
as soon as it exists (ledger.py), so a run killed at any point (even by
SIGKILL) is covered and ``vdevperf cleanup`` removes its leftovers, and only
those; links live only in our namespaces and die with them. A name that
exists before this run creates it is someone else's: it leaves the ledger and
the run stops. ``Session.close`` removes every namespace the run created that
is still the one it created, with SIGINT and SIGTERM blocked, then the
ledger; it runs on normal exit, on errors and on interruption. It is the
topology builder's teardown (cleanup.tear_down), so the two cannot drift.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType

from vdevperf.errors import VdevperfError
from vdevperf.scale.model import Links, ScaleConfig
from vdevperf.scale.rtnl import LOOPBACK_INDEX, Rtnl, RtnlError
from vdevperf.signals import held
from vdevperf.topology import naming, netns
from vdevperf.topology.cleanup import remove_namespace, tear_down
from vdevperf.topology.ledger import Ledger, journal_hook
from vdevperf.topology.probe import require_privileges

NS_LINK_INDEX = 2  # the veth end in each namespace: the first device after lo
BRIDGE_INDEX = 2  # the bridge in the hub: created before any veth end arrives there
NETWORK = ipaddress.IPv4Network("10.0.0.0/8")
LINKS_PER_SOURCE = 32768


class Layout:
    """Names and addresses of everything a scale run with run id ``run_id`` creates."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.hub = naming.netns_name(run_id, "hub")
        self.probe = naming.netns_name(run_id, "probe")
        self.ns_end = naming.ifname(run_id, "e0")
        self.bridge = naming.ifname(run_id, "br0")
        self.bridge_address = ipaddress.IPv4Interface(f"{NETWORK.network_address + 1}/{NETWORK.prefixlen}")

    def mountpoint_source(self, i: int) -> str:
        """The name of the file whose hard link becomes namespace ``i``'s mount point."""
        return naming.netns_name(self.run_id, f"mnt{i // LINKS_PER_SOURCE}")

    def ns(self, i: int) -> str:
        """The name of namespace ``i`` (1-based)."""
        return naming.netns_name(self.run_id, f"n{i:04d}")

    def hub_end(self, i: int) -> str:
        """The hub's end of namespace ``i``'s veth pair."""
        return naming.ifname(self.run_id, f"h{i:04d}")

    def address(self, i: int) -> ipaddress.IPv4Interface:
        """The address of namespace ``i``'s veth end."""
        return ipaddress.IPv4Interface(f"{NETWORK.network_address + 1 + i}/{NETWORK.prefixlen}")


class Session:
    """A scale run's ledger and hub; a context manager that removes everything it may have made."""

    def __init__(self, config: ScaleConfig) -> None:
        require_privileges("scale")
        self.config = config
        try:
            self.ledger = Ledger.create(topology="scale")
        except OSError as exc:
            raise VdevperfError("scale", f"cannot write the ledger: {exc.strerror or exc}") from exc
        self.layout = Layout(self.ledger.run_id)
        self.hub_fd: int | None = None
        self.hub: Rtnl | None = None
        self._closed = False

    @property
    def run_id(self) -> str:
        """The run id every name of this run carries."""
        return self.ledger.run_id

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Ledger every name, then create the hub (and its bridge)."""
        count = self.config.count
        sources = sorted({self.layout.mountpoint_source(i) for i in range(count + 1)})
        names = sources + [self.layout.hub, self.layout.probe] + [self.layout.ns(i) for i in range(1, count + 1)]
        self.ledger.add_namespaces(names)
        for source in sources:
            try:
                with held():  # journalled before any signal, like every namespace
                    netns.create_mountpoint_source(source)
                    self.journal(source)
            except FileExistsError:
                self.ledger.drop_namespace(source)
                raise VdevperfError(f"file {netns.path(source)}", "exists already (not created by this run)") from None
        self.create_netns(self.layout.hub)
        self.hub_fd = netns.open_fd(self.layout.hub)
        with netns.entered(self.hub_fd):
            self.hub = Rtnl()
        if self.config.bridge:
            self.hub.bridge_add(self.layout.bridge, BRIDGE_INDEX, up=True)
            self.hub.addr_add(BRIDGE_INDEX, self.layout.bridge_address)
            self._commit(self.hub, "hub bridge")

    # ---- creation helpers shared by the methods

    def link_from(self, i: int = 0) -> str:
        """The path ``netns.create(link_from=...)`` takes for namespace ``i`` (0: hub and probe)."""
        return netns.path(self.layout.mountpoint_source(i))

    def journal(self, name: str) -> None:
        """Journal the identity of ``name``, just created by this run; if that fails, remove it at once."""
        try:
            self.ledger.record_created(name)
        except BaseException:
            netns.remove(name)
            raise

    def _foreign(self, name: str) -> VdevperfError:
        self.ledger.drop_namespace(name)
        return VdevperfError(f"namespace {name}", "exists already (not created by this run)")

    def create_netns(self, name: str, inside: Callable[[], None] | None = None, i: int = 0) -> None:
        """netns.create (mount point linked) and journal it; a name that existed already leaves the ledger."""
        # Journalled before it is mounted under its name (see ledger.py), with no signal in between.
        with held():
            try:
                netns.create(name, inside, link_from=self.link_from(i), before_mount=journal_hook(self.ledger, name))
            except FileExistsError:
                raise self._foreign(name) from None
            except RtnlError as exc:
                raise VdevperfError(f"namespace {name}", str(exc.strerror)) from exc
            except OSError as exc:
                raise VdevperfError(f"namespace {name}", exc.strerror or str(exc)) from exc

    @contextlib.contextmanager
    def creating(self, names: Iterable[str]) -> Iterator[None]:
        """Around namespaces ``names`` made by another process (``ip``, a forked child): a name present
        before is someone else's (it leaves the ledger, and nothing is made); afterwards, even after a
        failure, every one that now exists is journalled, so teardown and cleanup can remove it.

        A forked child journals its namespace before mounting it, as create_netns does; ``ip`` cannot,
        so a SIGKILL in the moment after ``ip`` made a namespace and before this journals it leaves
        one that cleanup will not prove ours (it says so, and keeps the ledger)."""
        names = list(names)
        for name in names:
            if netns.exists(name):
                raise self._foreign(name)
        try:
            yield
        finally:
            with held():
                for name in names:
                    if netns.exists(name):
                        self.journal(name)

    def needs_inside(self, links: Links) -> bool:
        """True if namespaces need configuring from inside (lo up, a veth end, an address)."""
        return self.config.up or links is Links.VETH

    def configure_inside(self, i: int, links: Links) -> None:
        """From a thread inside namespace ``i``: lo up, its veth (peer to the hub), its address; one batch."""
        assert self.hub_fd is not None
        with Rtnl() as rtnl:
            if self.config.up:
                rtnl.link_up(LOOPBACK_INDEX)
            if links is Links.VETH:
                rtnl.veth_add(self.layout.ns_end, NS_LINK_INDEX, self.config.up, self.layout.hub_end(i), self.hub_fd)
                if self.config.addresses:
                    rtnl.addr_add(NS_LINK_INDEX, self.layout.address(i))
            rtnl.commit()

    def configure_existing(self, i: int, links: Links) -> None:
        """configure_inside for namespace ``i`` that exists already: the thread enters it, then comes back."""
        fd = netns.open_fd(self.layout.ns(i))
        try:
            with netns.entered(fd):
                self.configure_inside(i, links)
        except RtnlError as exc:
            raise VdevperfError(f"namespace {self.layout.ns(i)}", str(exc.strerror)) from exc
        finally:
            os.close(fd)

    def configure_hub(self, indices: Iterable[int], links: Links) -> None:
        """Bring the hub ends of namespaces ``indices`` up and onto the bridge, in one batch."""
        if links is not Links.VETH or not (self.config.up or self.config.bridge):
            return
        assert self.hub is not None
        master = BRIDGE_INDEX if self.config.bridge else None
        for i in indices:
            self.hub.link_set(self.layout.hub_end(i), self.config.up, master)
        self._commit(self.hub, "hub ends")

    def _commit(self, rtnl: Rtnl, what: str) -> None:
        try:
            rtnl.commit()
        except RtnlError as exc:
            raise VdevperfError(f"scale {what}", str(exc.strerror)) from exc

    # ---- teardown

    def destroy(self, names: Iterable[str]) -> tuple[int, float]:
        """Remove namespaces ``names``; (how many existed, seconds the calls took)."""
        removed = 0
        t0 = time.perf_counter()
        for name in names:
            if remove_namespace(name, self.ledger.identity(name)):
                removed += 1
        return removed, time.perf_counter() - t0

    def close(self) -> None:
        """Remove every ledgered namespace that exists (signals blocked), then the ledger."""
        if self._closed:
            return
        # Held from here: a signal between marking closed and tearing down would skip teardown.
        with held():
            self._closed = True
            closers: list[Callable[[], object]] = []
            if self.hub is not None:
                closers.append(self.hub.close)
            if self.hub_fd is not None:
                closers.append(functools.partial(os.close, self.hub_fd))
            self.hub = None
            self.hub_fd = None
            tear_down(self.ledger, closers, lambda why: VdevperfError("scale", why))
