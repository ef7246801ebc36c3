"""The machine a result was measured on: kernel, CPUs, software versions.

Recorded once per result file, because two figures are only comparable when
these match (or when the difference is the point of the comparison).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket

PACKAGES = ("vdevperf", "pyroute2", "psutil", "scapy", "tabulate")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    """The CPU model name from /proc/cpuinfo."""
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def package_versions() -> dict[str, str | None]:
    """Installed versions of vdevperf and the libraries that shape its figures."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict:
    """Facts about this machine worth storing with every result."""
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "packages": package_versions(),
        # The default for new namespaces; each run also records its sockets' own.
        "tcp_congestion_control": _read("/proc/sys/net/ipv4/tcp_congestion_control"),
        # Set by `vdevperf lab` in its guest: emulated or not, guest kernel, qemu, ...
        "lab": json.loads(os.environ["VDEVPERF_LAB"]) if "VDEVPERF_LAB" in os.environ else None,
    }
