"""The guest kernel and its initramfs, built on demand into the cache and never committed.

A Debian kernel comes from the ``linux-image-amd64`` metapackage (or a
package named with ``--debian-kernel``), resolved with ``apt-cache depends``
to the real ``linux-image-<release>`` package, fetched with ``apt-get
download``, unpacked with ``dpkg -x`` and indexed with ``depmod``. A kernel of
your own (``--kernel PATH``) is copied in, with its release read from the
bzImage header; its modules stay where they are.

The cache (``host.cache_root()``) holds one directory per kernel, keyed by
release and package version (or file hash):

    debian-<release>_<version>/   vmlinuz, vmlinux (its ELF, for PVH boot), config, modules/<release>/, kernel.json,
                                  initramfs-<hash>.img (busybox + virtio/9p/overlay modules)

Every build happens in a temporary directory next to its final place and is
renamed into place when complete, so an interrupted build leaves no half
directory that a later run would trust; stale temporary directories of dead
builders are removed. Building twice gives the same result.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from vdevperf.errors import VdevperfError
from vdevperf.lab import cpio, guest, host
from vdevperf.lab.host import LabUnavailable, install_hint

DEBIAN_METAPACKAGE = "linux-image-amd64"
# What the initramfs must load to reach the host root; each with its dependencies.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
_TEMP_PREFIX = ".build-"
_XEN_ELFNOTE_PHYS32_ENTRY = 18


@dataclass(frozen=True)
class KernelAssets:
    """A bootable guest kernel: image, initramfs, modules and where it came from."""

    release: str
    kernel: Path  # what qemu boots: the PVH kernel ELF when there is one, else the bzImage
    initramfs: Path
    modules_dir: Path | None
    source: str
    build_s: float = 0.0
    cached: bool = True


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise VdevperfError(what, f"{' '.join(argv)} took over 10 minutes") from None
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[-1]
        raise VdevperfError(what, f"{' '.join(argv)} failed: {why}")
    return done.stdout


def resolve_debian_package(package: str = DEBIAN_METAPACKAGE) -> tuple[str, str]:
    """The real kernel package behind ``package`` (a metapackage is followed) and its version."""
    apt_cache = host.tool("apt-cache")
    name = package
    for _ in range(3):  # linux-image-amd64 -> linux-image-<release>-amd64: a short chain at most
        try:
            record = _run([apt_cache, "show", "--no-all-versions", name], "lab")
        except VdevperfError:
            raise LabUnavailable(
                "lab", f"the kernel package {name} is unknown to apt; run apt-get update (or pass --kernel PATH)"
            ) from None
        version = re.search(r"^Version:\s*(\S+)", record, re.MULTILINE)
        # A metapackage depends on the real package, pinned to a version.
        depends = re.search(r"^Depends:\s*(linux-image-[^\s,|]+)\s*(?:\(=\s*([^)\s]+)\))?", record, re.MULTILINE)
        if depends is None:
            if version is None:
                raise LabUnavailable("lab", f"apt-cache show {name} gives no version; run apt-get update")
            return name, version.group(1)
        name = depends.group(1)
        if depends.group(2):
            return name, depends.group(2)
    raise VdevperfError("lab", f"{package} does not lead to a kernel package")


def kernel_release(bzimage: Path) -> str:
    """The release string (``uname -r``) stored in an x86 bzImage header."""
    with open(bzimage, "rb") as f:
        head = f.read(0x220)
        if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
            raise VdevperfError(str(bzimage), "not an x86 bzImage kernel (no HdrS header)")
        offset = int.from_bytes(head[0x20E:0x210], "little")
        f.seek(offset + 0x200)
        text = f.read(256).split(b"\0")[0].decode(errors="replace")
    if not text:
        raise VdevperfError(str(bzimage), "its header names no kernel version")
    return text.split()[0]


def _payload(bzimage: bytes) -> bytes | None:
    """The kernel ELF compressed inside a bzImage (xz, gzip or bzip2), or None for other kinds."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sects = bzimage[0x1F1] or 4
    offset = int.from_bytes(bzimage[0x248:0x24C], "little")
    length = int.from_bytes(bzimage[0x24C:0x250], "little")
    start = (setup_sects + 1) * 512 + offset
    blob = bzimage[start : start + length]
    try:
        if blob.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)
        if blob.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(wbits=31).decompress(blob)
        if blob.startswith(b"BZh"):
            return bz2.BZ2Decompressor().decompress(blob)
    except (lzma.LZMAError, zlib.error, OSError, EOFError):
        return None
    return None


def _has_pvh_entry(elf: bytes) -> bool:
    """True if a 64-bit kernel ELF carries the Xen PVH entry note, so qemu can boot it as it is."""
    if elf[:5] != b"\x7fELF\x02" or elf[5] != 1:
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and note_type == _XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def _boot_image(bzimage: Path, directory: Path) -> None:
    """Store the kernel to boot in ``directory``: its uncompressed ELF if qemu can boot that (PVH), else itself.

    Under TCG, unpacking an xz kernel in the guest costs about 5 s of every boot;
    a PVH kernel ELF boots directly (7.5 s to 2.6 s to a panic here).
    """
    data = bzimage.read_bytes()
    elf = _payload(data)
    if elf is not None and _has_pvh_entry(elf):
        (directory / "vmlinux").write_bytes(elf)
    shutil.copyfile(bzimage, directory / "vmlinuz")


def _kernel_file(kernel_dir: Path) -> Path:
    vmlinux = kernel_dir / "vmlinux"
    return vmlinux if vmlinux.is_file() else kernel_dir / "vmlinuz"


def _remove_stale_builds(parent: Path) -> None:
    """Temporary build directories whose builder process is gone (e.g. killed mid-build)."""
    for path in parent.glob(f"{_TEMP_PREFIX}*"):
        match = re.search(r"-(\d+)-[^-]*$", path.name)
        pid = int(match.group(1)) if match else 0
        alive = pid > 0
        if alive:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                pass
        if not alive:
            shutil.rmtree(path, ignore_errors=True)


def _build_dir(parent: Path, key: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(parent)
    temp = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{key}-{os.getpid()}-", dir=parent))
    temp.chmod(0o755)  # mkdtemp makes it 0700; the cache is readable like any other
    return temp


def _publish(temp: Path, final: Path) -> None:
    """Rename a finished build into place; if another builder won the race, keep theirs."""
    try:
        os.rename(temp, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(temp, ignore_errors=True)


def _fetch_debian(package: str, version: str, final: Path) -> None:
    apt_get, dpkg, depmod = host.tool("apt-get"), host.tool("dpkg"), host.tool("depmod")
    release = package.removeprefix("linux-image-")
    temp = _build_dir(final.parent, final.name)
    try:
        try:
            _run([apt_get, "download", f"{package}={version}"], "lab", cwd=temp)
        except VdevperfError as exc:
            raise LabUnavailable("lab", f"cannot fetch the kernel package: {exc.why}") from None
        deb = next(temp.glob("*.deb"))
        _run([dpkg, "-x", str(deb), str(temp / "unpacked")], "lab")
        deb.unlink()
        unpacked = temp / "unpacked"
        vmlinuz = unpacked / "boot" / f"vmlinuz-{release}"
        modules = next(
            (
                p
                for p in (unpacked / "lib" / "modules" / release, unpacked / "usr" / "lib" / "modules" / release)
                if p.is_dir()
            ),
            None,
        )
        if not vmlinuz.is_file() or modules is None:
            raise VdevperfError("lab", f"{package} holds no boot/vmlinuz-{release} or lib/modules/{release}")
        _boot_image(vmlinuz, temp)
        config = unpacked / "boot" / f"config-{release}"
        if config.is_file():
            os.rename(config, temp / "config")
        (temp / "modules").mkdir()
        os.rename(modules, temp / "modules" / release)
        shutil.rmtree(unpacked)
        # Debian's package leaves modules.dep to its postinst; the guest's modprobe needs it.
        (temp / "root" / "lib").mkdir(parents=True)
        os.symlink("../../modules", temp / "root" / "lib" / "modules")
        _run([depmod, "-b", str(temp / "root"), release], "lab")
        (temp / "kernel.json").write_text(
            json.dumps({"release": release, "package": package, "version": version}, indent=1) + "\n"
        )
        _publish(temp, final)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _module_files(modules_root: Path, release: str) -> list[Path]:
    """The module files BOOT_MODULES need, dependencies first, none twice; built-in ones are skipped."""
    modprobe = host.tool("modprobe")
    files: list[Path] = []
    for module in BOOT_MODULES:
        # One module per call: later arguments would be taken as module parameters.
        out = _run([modprobe, "-d", str(modules_root), "-S", release, "--show-depends", module], "lab")
        for line in out.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "insmod" and Path(words[1]) not in files:
                files.append(Path(words[1]))
    return files


def _module_bytes(path: Path) -> bytes:
    """A module's ELF bytes: busybox insmod loads plain .ko only, so compressed ones are unpacked here."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        return subprocess.run([host.tool("zstd"), "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def _initramfs(kernel_dir: Path, release: str, modules_root: Path | None) -> Path:
    """The initramfs for this kernel, built if missing; named by a hash of everything in it."""
    busybox = host.static_busybox().read_bytes()
    files = _module_files(modules_root, release) if modules_root is not None else []
    blobs = [(f"{i:02d}-{p.name.split('.ko')[0]}.ko", _module_bytes(p)) for i, p in enumerate(files)]
    digest = hashlib.sha256(guest.INIT.encode() + busybox)
    for name, data in blobs:
        digest.update(name.encode() + hashlib.sha256(data).digest())
    path = kernel_dir / f"initramfs-{digest.hexdigest()[:16]}.img"
    if path.is_file():
        return path
    entries = [cpio.directory(d) for d in ("bin", "dev", "proc", "sys", "lib", guest.MODULE_DIR)]
    entries += [
        cpio.char_device("dev/console", 5, 1),
        cpio.file("bin/busybox", busybox, executable=True),
        cpio.file("init", guest.INIT.encode(), executable=True),
        cpio.file(guest.MODULE_LIST, "".join(f"{name}\n" for name, _ in blobs).encode()),
    ]
    entries += [cpio.file(f"{guest.MODULE_DIR}/{name}", data) for name, data in blobs]
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=kernel_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cpio.archive(entries))
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    for old in kernel_dir.glob("initramfs-*.img"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def _check_tools() -> None:
    host.tool("qemu-system-x86_64")
    host.static_busybox()


def debian_kernel(package: str = DEBIAN_METAPACKAGE, cache: Path | None = None) -> KernelAssets:
    """Debian's kernel (fetched and built into the cache on first use) with its initramfs."""
    _check_tools()
    host.tool("modprobe")
    started = time.monotonic()
    name, version = resolve_debian_package(package)
    release = name.removeprefix("linux-image-")
    kernel_dir = (cache or host.cache_root()) / f"debian-{release}_{version}"
    cached = kernel_dir.is_dir()
    if not cached:
        _fetch_debian(name, version, kernel_dir)
    initramfs = _initramfs(kernel_dir, release, kernel_dir / "root")
    return KernelAssets(
        release=release,
        kernel=_kernel_file(kernel_dir),
        initramfs=initramfs,
        modules_dir=kernel_dir / "modules" / release,
        source=f"debian:{name}={version}",
        build_s=time.monotonic() - started,
        cached=cached,
    )


def _modules_root(release: str, modules: Path | None) -> Path | None:
    """A root directory whose lib/modules/<release> holds the modules, or None (all built in)."""
    candidates = [modules] if modules is not None else [Path("/lib/modules") / release]
    for directory in candidates:
        if directory is not None and (directory / "modules.dep").is_file():
            return directory
    if modules is not None:
        raise VdevperfError(
            f"--modules {modules}",
            "holds no modules.dep (run depmod, or give the lib/modules/<release> directory of this kernel)",
        )
    return None


def custom_kernel(path: Path, modules: Path | None = None, cache: Path | None = None) -> KernelAssets:
    """A kernel image of your own; its modules (``--modules``, else /lib/modules/<release>) are optional."""
    _check_tools()
    if not path.is_file():
        raise VdevperfError(f"--kernel {path}", "no such file")
    started = time.monotonic()
    release = kernel_release(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    kernel_dir = (cache or host.cache_root()) / f"custom-{release}_{digest}"
    cached = kernel_dir.is_dir()
    if not cached:
        temp = _build_dir(kernel_dir.parent, kernel_dir.name)
        try:
            _boot_image(path, temp)
            (temp / "kernel.json").write_text(json.dumps({"release": release, "file": str(path.resolve())}) + "\n")
            _publish(temp, kernel_dir)
        finally:
            if temp.exists():
                shutil.rmtree(temp, ignore_errors=True)
    modules_dir = _modules_root(release, modules)
    root = None
    if modules_dir is not None:
        # modprobe -d wants ROOT with ROOT/lib/modules/<release>; give it a symlink tree in the kernel dir.
        root = kernel_dir / "root"
        link = root / "lib" / "modules" / release
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink() or Path(os.readlink(link)) != modules_dir.resolve():
            link.unlink(missing_ok=True)
            os.symlink(modules_dir.resolve(), link)
        host.tool("modprobe")
    initramfs = _initramfs(kernel_dir, release, root)
    return KernelAssets(
        release=release,
        kernel=_kernel_file(kernel_dir),
        initramfs=initramfs,
        modules_dir=modules_dir.resolve() if modules_dir else None,
        source=f"file:{path.resolve()}",
        build_s=time.monotonic() - started,
        cached=cached,
    )


__all__ = [
    "KernelAssets",
    "LabUnavailable",
    "custom_kernel",
    "debian_kernel",
    "install_hint",
    "kernel_release",
    "resolve_debian_package",
]
