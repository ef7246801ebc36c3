"""What the lab needs from the host: tools (with the command that installs each), the cache, KVM.

Nothing here changes the host: tools are looked up, ``/dev/kvm`` is opened
and closed, and the cache directory is the only place the lab writes to.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
from pathlib import Path

from vdevperf.errors import VdevperfError

# Debian package that provides each tool the lab runs on the host.
PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "depmod": "kmod",
    "modprobe": "kmod",
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg": "dpkg",
}
# Where Debian puts tools that a non-login PATH may lack.
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
_KVM_GET_API_VERSION = 0xAE00


class LabUnavailable(VdevperfError):
    """The lab cannot run here: a tool or the kernel package is missing (tests skip on this)."""


def install_hint(*packages: str) -> str:
    """The command that installs Debian packages."""
    return f"apt-get install -y {' '.join(packages)}"


def tool(name: str) -> str:
    """The path of a host tool, or LabUnavailable naming the package to install."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_EXTRA_PATH))
    if found is None:
        package = PACKAGES.get(name, name)
        raise LabUnavailable("lab", f"{name} not found; install it with: {install_hint(package)}")
    return found


def static_busybox() -> Path:
    """A statically linked busybox (the initramfs has no C library), or LabUnavailable."""
    for candidate in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and os.path.isfile(candidate) and not has_interpreter(Path(candidate)):
            return Path(candidate)
    raise LabUnavailable(
        "lab",
        "no statically linked busybox found (the initramfs needs one); install it with: "
        f"{install_hint('busybox-static')}",
    )


def has_interpreter(path: Path) -> bool:
    """True if the ELF file at ``path`` names a program interpreter (is dynamically linked)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # not a 64-bit ELF: treat as unusable
            return True
        endian = "<" if head[5] == 1 else ">"
        (phoff,) = struct.unpack_from(endian + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(
        struct.unpack_from(endian + "I", table, i * phentsize)[0] == 3  # PT_INTERP
        for i in range(phnum)
    )


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/vdevperf/lab``, else ``~/.cache/vdevperf/lab``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vdevperf" / "lab"


def kvm_device_usable() -> tuple[bool, str]:
    """Whether /dev/kvm opens and answers; a usable device may still hang a guest (see vm.py)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"/dev/kvm: {exc.strerror}"
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
    except OSError as exc:
        return False, f"/dev/kvm: {exc.strerror}"
    finally:
        os.close(fd)
    return (version == 12, "ok" if version == 12 else f"/dev/kvm: unexpected API version {version}")
