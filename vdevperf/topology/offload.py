"""Offload features (TSO, GSO, GRO, checksums...) of topology devices: read, set, restore.

Through pyroute2's ethtool support (the SIOCETHTOOL ioctl on a socket
created inside the device's namespace), never an ``ethtool`` subprocess.
Users name features the way ethtool's short options do (``tso``, ``gso``,
``gro``, ``lro``, ``sg``, ``tx``, ``rx``); each stands for one or more kernel
features (``tso`` is all four TCP segmentation features, ``tx`` every
transmit checksum). The kernel enforces dependencies (no TSO without
scatter-gather, no scatter-gather without transmit checksums), so after a
change the features are read again and what really changed is reported,
and a request the kernel did not honour is an error, not a silent
mismatch. Everything touched is put back on exit, even after a failure.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from pyroute2.ethtool import Ethtool  # type: ignore[import-untyped]

from vdevperf.errors import VdevperfError
from vdevperf.topology import netns

# Short names and the kernel features (ETH_SS_FEATURES strings, shell patterns) each stands
# for. Patterns, because kernels add members: 6.18 has tx-tcp-accecn-segmentation in TSO.
GROUPS: dict[str, tuple[str, ...]] = {
    "tso": ("tx-tcp*segmentation",),
    "gso": ("tx-generic-segmentation",),
    "gro": ("rx-gro",),
    "lro": ("rx-lro",),
    "sg": ("tx-scatter-gather",),
    "tx": ("tx-checksum-*",),
    "rx": ("rx-checksum",),
}
# ethtool's long names are accepted too.
LONG_NAMES = {
    "tcp-segmentation-offload": "tso",
    "generic-segmentation-offload": "gso",
    "generic-receive-offload": "gro",
    "large-receive-offload": "lro",
    "scatter-gather": "sg",
    "tx-checksumming": "tx",
    "rx-checksumming": "rx",
}
# What a feature needs on: said when the kernel refuses to turn it on.
NEEDS = {"tso": ("sg", "tx"), "gso": ("sg",), "sg": ("tx",)}


def canonical(name: str) -> str:
    """The short name of a feature given by short or ethtool long name; ValueError if unknown."""
    short = LONG_NAMES.get(name, name)
    if short not in GROUPS:
        raise ValueError(f"unknown offload feature '{name}' (known: {', '.join(GROUPS)})")
    return short


@dataclass(frozen=True)
class OffloadRequest:
    """Turn ``feature`` on or off on one topology device, or (device None) on every device of the path."""

    feature: str
    enable: bool
    device: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.device}:" if self.device else ""
        return f"{prefix}{self.feature}={'on' if self.enable else 'off'}"


def parse_requests(text: str) -> list[OffloadRequest]:
    """``tso=off,gro=off`` or ``DEV:tso=off``; ValueError saying what is wrong."""
    requests = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        device, _, setting = item.rpartition(":")
        name, sep, value = setting.partition("=")
        if not sep or value not in ("on", "off"):
            raise ValueError(f"'{item}' is not FEATURE=on|off or DEV:FEATURE=on|off")
        requests.append(OffloadRequest(canonical(name), value == "on", device or None))
    if not requests:
        raise ValueError("no offload setting given")
    return requests


@dataclass(frozen=True)
class GroupState:
    """One short-named feature on one device: on if any of its kernel features is on; fixed if
    the driver lets none of them change (a feature the driver lacks reads as fixed off)."""

    active: bool
    fixed: bool


def members(group: str, features: Iterable[str]) -> list[str]:
    """The kernel features among ``features`` that the short name ``group`` stands for."""
    return [name for name in features if any(fnmatch.fnmatchcase(name, p) for p in GROUPS[group])]


def group_states(features: dict) -> dict[str, GroupState]:
    """The short-named view of a device's kernel features (pyroute2 EthtoolFeatures.features)."""
    states = {}
    for group in GROUPS:
        present = [features[m] for m in members(group, features)]
        states[group] = GroupState(active=any(f.enable for f in present), fixed=not any(f.available for f in present))
    return states


@dataclass(frozen=True)
class Device:
    """A device of the data path: its topology name, real name and namespace fd."""

    name: str
    ifname: str
    netns_fd: int


class Offloads:
    """Offload control over a set of devices; remembers every original state it changes."""

    def __init__(self, devices: Sequence[Device]) -> None:
        self.devices = list(devices)
        self._ethtool: dict[int, Ethtool] = {}
        self._original: dict[str, dict[str, bool]] = {}

    def _tool(self, device: Device) -> Ethtool:
        # The ioctl socket answers for the namespace it was created in.
        if device.netns_fd not in self._ethtool:
            with netns.entered(device.netns_fd):
                self._ethtool[device.netns_fd] = Ethtool()
        return self._ethtool[device.netns_fd]

    def read(self, device: Device) -> dict:
        """The device's kernel features, freshly read."""
        return self._tool(device).get_features(device.ifname).features

    def state(self) -> dict[str, dict[str, dict[str, bool]]]:
        """Per device, per short name: active and fixed, as JSON data."""
        return {
            d.name: {g: {"active": s.active, "fixed": s.fixed} for g, s in group_states(self.read(d)).items()}
            for d in self.devices
        }

    def _targets(self, requests: Iterable[OffloadRequest]) -> dict[str, dict[str, bool]]:
        by_name = {d.name: d for d in self.devices}
        wanted: dict[str, dict[str, bool]] = {}
        for req in requests:
            if req.device is not None and req.device not in by_name:
                raise VdevperfError(
                    "--offload", f"no device '{req.device}' in this topology (devices: {', '.join(by_name)})"
                )
            for dev in self.devices if req.device is None else [by_name[req.device]]:
                wanted.setdefault(dev.name, {})[req.feature] = req.enable
        return wanted

    def apply(self, requests: Sequence[OffloadRequest]) -> dict[str, list[str]]:
        """Set the requested features; per device, the kernel features that really changed.

        Raises VdevperfError, with everything restored, if a feature is fixed in
        the other state or the kernel kept it from changing.
        """
        changed: dict[str, list[str]] = {}
        try:
            for device_name, wanted in self._targets(requests).items():
                device = next(d for d in self.devices if d.name == device_name)
                changed[device_name] = self._apply_one(device, wanted)
        except BaseException:
            self.restore()
            raise
        return changed

    def _apply_one(self, device: Device, wanted: dict[str, bool]) -> list[str]:
        tool = self._tool(device)
        current = tool.get_features(device.ifname)
        before = {name: f.enable for name, f in current.features.items()}
        groups = group_states(current.features)
        where = f"device '{device.name}' ({device.ifname})"
        for group, enable in wanted.items():
            if groups[group].fixed and groups[group].active != enable:
                raise VdevperfError(
                    f"--offload {group}={'on' if enable else 'off'}",
                    f"{where}: {group} is fixed {'on' if groups[group].active else 'off'} "
                    "by its driver and cannot change",
                )
            for member in members(group, current.features):
                feature = current.features[member]
                if feature.available:
                    feature.enable = enable
        self._original.setdefault(device.ifname, before)
        tool.set_features(device.ifname, current)
        after = self.read(device)
        now = group_states(after)
        for group, enable in wanted.items():
            if now[group].active != enable:
                needs = NEEDS.get(group, ())
                hint = f" (it needs {' and '.join(needs)} on)" if enable and needs else ""
                raise VdevperfError(
                    f"--offload {group}={'on' if enable else 'off'}",
                    f"{where}: the kernel left {group} {'on' if now[group].active else 'off'}{hint}",
                )
        return sorted(name for name, f in after.items() if f.enable != before.get(name))

    def restore(self) -> None:
        """Put every feature changed through this object back as it was."""
        for device in self.devices:
            original = self._original.pop(device.ifname, None)
            if original is None:
                continue
            current = self._tool(device).get_features(device.ifname)
            for name, feature in current.features.items():
                if feature.available and name in original:
                    feature.enable = original[name]
            self._tool(device).set_features(device.ifname, current)

    def close(self) -> None:
        """Restore, then release the ethtool sockets."""
        try:
            self.restore()
        finally:
            for tool in self._ethtool.values():
                tool.close()
            self._ethtool.clear()

    def __enter__(self) -> Offloads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def applied(devices: Sequence[Device], requests: Sequence[OffloadRequest]) -> Iterator[tuple[Offloads, dict]]:
    """Apply ``requests`` for the duration of the block; restored afterwards, whatever happens."""
    with Offloads(devices) as offloads:
        changed = offloads.apply(requests) if requests else {}
        yield offloads, changed
