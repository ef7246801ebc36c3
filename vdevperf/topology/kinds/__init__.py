"""Device kinds: one module per kind in this package, and the registry that finds them.

Everything that makes a kind lives in its module (LNST's ``lnst/Devices/`` and
pyroute2's ``ifinfmsg/plugins/`` do the same): its TOML keys and their checks,
its parent and peer rules, its modes, its kernel config option, its netlink
request, its probe sample and its offload notes. The spec parser, the builder,
the probe and ``doctor`` know kinds only through ``registry()``, so a new kind is
one new module here that defines ``KIND``, an instance of a Kind subclass;
nothing else is listed anywhere. Modules whose name starts with ``_`` are
helpers shared by several kinds (``_stacked.py``), not kinds.

The requests are pure: a kind returns the arguments of pyroute2's
``IPRoute.link("add", ...)`` and the namespace to send them in; builder.py and
probe.py send them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from vdevperf.model import DeviceSpec, OptionValue
from vdevperf.topology import plugins


@dataclass(frozen=True)
class Key:
    """A TOML key a kind takes beyond the common ones, with its type and its default.

    ``peer`` and ``parent`` are the two relations the model knows (DeviceSpec fields: the
    builder orders by them, the parser checks that they name devices); every other key's
    value goes to ``DeviceSpec.options``, the default included, so a builder always finds it.
    """

    name: str
    type: type[str] | type[int] | type[bool]
    default: OptionValue | None = None


# The other end of a pair (veth), and the device a stacked device sits on.
PEER = Key("peer", str)
PARENT = Key("parent", str)


class View(Protocol):
    """What a request needs to know beyond its own device: the topology being built, real names,
    namespace fds and the indexes of devices created before it (builder.Topology, probe's view)."""

    def device(self, name: str) -> DeviceSpec: ...

    def ifname(self, name: str) -> str: ...

    def netns_fd(self, short: str) -> int: ...

    def index(self, name: str) -> int: ...


@dataclass(frozen=True)
class Request:
    """One ``IPRoute.link("add", **args)`` sent in namespace ``netns``; it creates devices ``creates``."""

    netns: str
    args: dict[str, Any]
    creates: tuple[str, ...]


class Kind:
    """A device kind. Subclasses set the class attributes and override what differs.

    Checks raise ValueError with the message that ends the one-line error
    (``device 'x': ...``); the parser adds the file. They run at parse time, so
    a topology that loads fails to build only for reasons of the running system.
    """

    name: ClassVar[str]
    # The kernel option a kernel without this kind lacks: named when it says EOPNOTSUPP.
    config: ClassVar[str]
    # Where the kind is listed (known kinds, doctor): lower first, then by name.
    order: ClassVar[int] = 100
    # Accepted modes; the first is the default. Empty: the kind takes no mode.
    modes: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[tuple[Key, ...]] = ()
    # May carry stacked devices (be their parent), and may have ports (be a master).
    carrier: ClassVar[bool] = False
    has_ports: ClassVar[bool] = False
    # What to know about this kind's offload features when reading a comparison.
    offload_note: ClassVar[str] = ""

    @property
    def default_mode(self) -> str | None:
        """The mode a device of this kind gets when its table names none."""
        return self.modes[0] if self.modes else None

    def headroom(self, dev: DeviceSpec) -> int:
        """Bytes of outer headers ``dev`` adds to what it sends through its parent (a tunnel's
        encapsulation): the parent needs an MTU this much larger to carry ``dev``'s MTU whole."""
        return 0

    def key(self, name: str) -> Key | None:
        """The declared key ``name``, or None if this kind does not take it."""
        return next((k for k in self.keys if k.name == name), None)

    def check(self, dev: DeviceSpec) -> None:
        """Rules on the device alone (required keys, value ranges)."""

    def check_links(self, dev: DeviceSpec, devices: Mapping[str, DeviceSpec]) -> None:
        """Rules between this device and the others it names (peer, parent)."""

    def check_port(self, port: DeviceSpec, master: DeviceSpec) -> None:
        """Rules on a device that names ``master`` (of this kind, which has_ports) as its master."""

    def common_args(self, dev: DeviceSpec, view: View) -> dict[str, Any]:
        """Arguments every kind's request starts with. The MTU goes in the creating request:
        no extra round trip per device."""
        args: dict[str, Any] = {"ifname": view.ifname(dev.name), "kind": self.name}
        if dev.mtu is not None:
            args["mtu"] = dev.mtu
        return args

    def request(self, dev: DeviceSpec, view: View) -> Request:
        """The request that creates ``dev``, sent in its own namespace by default."""
        return Request(dev.netns, self.common_args(dev, view), (dev.name,))

    def sample(self, name: str, netns: str, mode: str | None, parent: str) -> tuple[DeviceSpec, ...]:
        """The devices probe.py creates to learn whether this kernel has this kind (in ``mode``):
        the first is of this kind, the others come with it in the same request; ``parent`` is a
        carrier the probe created before, for kinds that need one."""
        return (DeviceSpec(name=name, kind=self.name, netns=netns, mode=mode),)


def _discover() -> dict[str, Kind]:
    found = plugins.discover(__name__, __path__, "KIND", Kind, lambda kind: (kind.order, kind.name))
    return {kind.name: kind for kind in found}


@functools.cache
def registry() -> Mapping[str, Kind]:
    """Every kind, by name, in listing order; found once, on first use, from this package's modules."""
    return _discover()


def kind_of(dev: DeviceSpec) -> Kind:
    """The Kind of a device (its kind was checked when the topology was parsed)."""
    return registry()[dev.kind]


def known() -> str:
    """The kind names in listing order, as errors list them."""
    return ", ".join(registry())


def described(kinds: list[Kind]) -> str:
    """``a veth or a bridge``: how a rule names the kinds it allows."""
    return " or ".join(f"{'an' if kind.name[0] in 'aeio' else 'a'} {kind.name}" for kind in kinds)
