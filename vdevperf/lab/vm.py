"""Boot the guest in qemu-system-x86_64, stream the command's output back, return its exit status.

The guest sees the host's root read-only (9p), writes into a tmpfs overlay,
and gets a control share (job script in; output, exit status out) plus the
writable result shares; it has no network device (``-nic none``). qemu is
our child: it is started in its own process group, dies with us even on
``kill -9`` (PR_SET_PDEATHSIG), and is killed by its pid on a timeout, an
error, SIGINT or SIGTERM. Nothing is mounted on the host.

Acceleration: ``kvm``, ``tcg`` or ``auto``. KVM can be present yet unable to
boot a stock kernel (nested virtualisation: the guest hangs before printing
anything), so ``auto`` boots with KVM only while /dev/kvm answers, waits a
bounded time for /init's first console line, and otherwise kills qemu and
boots again under TCG. A hang is remembered in the cache, per host kernel,
qemu version and guest kernel, so later runs go straight to TCG.
"""

from __future__ import annotations

import ctypes
import dataclasses
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vdevperf.errors import VdevperfError
from vdevperf.lab import guest, host, record
from vdevperf.lab.assets import KernelAssets
from vdevperf.signals import held

ACCELS = ("auto", "kvm", "tcg")
_POLL_S = 0.05
_PR_SET_PDEATHSIG = 1
_KVM_VERDICTS = "kvm.json"
LAST_CONSOLE = "last-console.log"


@dataclass(frozen=True)
class VmConfig:
    """How to run the guest."""

    mem_mib: int = 256
    cpus: int = 2
    accel: str = "auto"
    timeout_s: float | None = None
    # KVM must reach /init within this (a working KVM boot takes about 1 s); then TCG is tried.
    kvm_timeout_s: float = 10.0
    # TCG needs 7-9 s to a ready root here; past this the guest is taken as hung.
    boot_timeout_s: float = 120.0
    # Show the guest's console (kernel messages, /init) on stderr, and boot without "quiet".
    console: bool = False

    def __post_init__(self) -> None:
        if self.accel not in ACCELS:
            raise ValueError(f"--accel: '{self.accel}' is not one of {', '.join(ACCELS)}")
        if self.mem_mib < 128:
            raise ValueError(f"--mem: {self.mem_mib} MiB is too little for the guest (128 at least)")
        if self.cpus < 1:
            raise ValueError(f"--cpus: {self.cpus} is not a CPU count")


@dataclass(frozen=True)
class Outcome:
    """How a guest run ended."""

    status: int
    accel: str
    qemu_version: str
    boot_s: float | None
    guest_uptime_at_boot_s: float | None
    total_s: float
    lab: dict
    kvm_note: str | None = None


class _Guest:
    """One qemu process and the control directory it shares with the guest."""

    def __init__(self, argv: list[str], ctl: Path) -> None:
        self.ctl = ctl
        self.started = time.monotonic()
        with open(ctl / "qemu.log", "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=_die_with_parent,
            )

    def stop(self) -> None:
        """Kill qemu (our child, by its pid) and reap it; the guest keeps nothing worth a clean shutdown."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def qemu_version(qemu: str) -> str:
    """``qemu-system-x86_64 --version``'s version number."""
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    words = out.split()
    return words[3] if len(words) > 3 and words[:3] == ["QEMU", "emulator", "version"] else out.strip()


def _virtfs(path: Path, tag: str, readonly: bool = False) -> str:
    # security_model=none: files are created as qemu's user, and chown/chmod failures are ignored.
    escaped = str(path).replace(",", ",,")
    return f"local,path={escaped},mount_tag={tag},security_model=none,multidevs=remap" + (
        ",readonly=on" if readonly else ""
    )


def qemu_argv(qemu: str, assets: KernelAssets, job: guest.Job, ctl: Path, config: VmConfig, accel: str) -> list[str]:
    """The qemu command line: no network, no display, console to a file, host root read-only."""
    argv = [
        qemu,
        "-accel",
        accel,
        "-cpu",
        "host" if accel == "kvm" else "max",
        "-m",
        str(config.mem_mib),
        "-smp",
        str(config.cpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-nic",
        "none",
        "-no-reboot",
        "-serial",
        f"file:{ctl / 'console.log'}",
        "-kernel",
        str(assets.kernel),
        "-initrd",
        str(assets.initramfs),
        "-append",
        "console=ttyS0 panic=-1" + ("" if config.console else " quiet"),
        "-virtfs",
        _virtfs(Path("/"), guest.ROOT_TAG, readonly=True),
        "-virtfs",
        _virtfs(ctl, guest.CTL_TAG),
    ]
    for index, share in enumerate(job.shares):
        argv += ["-virtfs", _virtfs(share, guest.share_tag(index))]
    return argv


class _Tail:
    """New bytes of a file that another process appends to."""

    def __init__(self, path: Path, sink: BinaryIO | None) -> None:
        self.path = path
        self.sink = sink
        self.offset = 0
        self.seen = b""

    def pump(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        self.offset += len(data)
        if self.sink is None:
            self.seen = (self.seen + data)[-65536:]
        else:
            self.sink.write(data)
            self.sink.flush()


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def _why_stopped(ctl: Path, qemu_status: int) -> str:
    """Why the guest ended without an exit status: its own word (job or /init), else qemu's."""
    if (ctl / "error").exists():
        return (ctl / "error").read_text().strip()
    try:
        console = (ctl / "console.log").read_text(errors="replace").splitlines()
    except OSError:
        console = []
    said = [line.split(guest.ERROR_PREFIX, 1)[1] for line in console if guest.ERROR_PREFIX in line]
    if said:
        return said[-1].strip()
    last = _last_line(ctl / "qemu.log")
    return f"the guest stopped before the command ended (qemu exit status {qemu_status}{': ' + last if last else ''})"


def _verdict_key(qemu_ver: str, release: str) -> str:
    return f"host {platform.release()} qemu {qemu_ver} guest {release}"


def _kvm_verdicts(cache: Path) -> dict:
    try:
        return json.loads((cache / _KVM_VERDICTS).read_text())
    except (OSError, ValueError):
        return {}


def _remember_kvm(cache: Path, key: str, works: bool, why: str) -> None:
    checked = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    verdicts = _kvm_verdicts(cache) | {key: {"works": works, "why": why, "checked": checked}}
    cache.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{_KVM_VERDICTS}.", dir=cache)
    with os.fdopen(fd, "w") as f:
        json.dump(verdicts, f, indent=1)
    os.replace(temp, cache / _KVM_VERDICTS)


def _accels(config: VmConfig, cache: Path, key: str) -> tuple[list[str], str | None]:
    """Accelerators to try in order, and a note on why KVM is skipped under auto."""
    if config.accel != "auto":
        return [config.accel], None
    usable, why = host.kvm_device_usable()
    if not usable:
        return ["tcg"], f"KVM unavailable ({why}); using TCG"
    verdict = _kvm_verdicts(cache).get(key)
    if verdict is not None and not verdict["works"]:
        return ["tcg"], (
            f"KVM hung at boot on this host before ({verdict['why']}, remembered in "
            f"{cache / _KVM_VERDICTS}); using TCG; --accel kvm tries it again"
        )
    return ["kvm", "tcg"], None


class _KvmHung(Exception):
    pass


def _reset(ctl: Path) -> None:
    for name in ("stdout", "stderr", "console.log", "booted", "status", "error"):
        (ctl / name).unlink(missing_ok=True)
    (ctl / "stdout").touch()
    (ctl / "stderr").touch()


def _watch(
    g: _Guest, config: VmConfig, accel: str, probing_kvm: bool, out: BinaryIO, err: BinaryIO
) -> tuple[float | None, float | None]:
    """Stream output until qemu exits; the host time and guest uptime at which the root was ready."""
    tails = [_Tail(g.ctl / "stdout", out), _Tail(g.ctl / "stderr", err)]
    console = _Tail(g.ctl / "console.log", None)
    if config.console:
        tails.append(_Tail(g.ctl / "console.log", err))
    marker = guest.READY_MARKER.encode()
    init_seen = False
    boot_s = uptime = None
    while True:
        running = g.proc.poll() is None
        for tail in tails:
            tail.pump()
        elapsed = time.monotonic() - g.started
        if not init_seen:
            console.pump()
            init_seen = marker in console.seen
            if not init_seen and probing_kvm and elapsed > config.kvm_timeout_s and running:
                raise _KvmHung(f"no init within {config.kvm_timeout_s:g} s")
        if boot_s is None and (g.ctl / "booted").exists():
            boot_s = elapsed
            try:
                uptime = float((g.ctl / "booted").read_text().strip())
            except ValueError:
                uptime = None
        if not running:
            return boot_s, uptime
        if boot_s is None and elapsed > config.boot_timeout_s:
            raise VdevperfError("lab", f"the guest ({accel}) did not boot within {config.boot_timeout_s:g} s")
        if config.timeout_s is not None and elapsed > config.timeout_s:
            raise VdevperfError(
                "lab", f"the guest command did not finish within {config.timeout_s:g} s (--timeout); qemu was stopped"
            )
        time.sleep(_POLL_S)


def run(
    assets: KernelAssets,
    job: guest.Job,
    config: VmConfig,
    out: BinaryIO,
    err: BinaryIO,
    notify: Callable[[str], None] = lambda message: None,
    cache: Path | None = None,
) -> Outcome:
    """Boot ``assets``, run ``job`` in the guest, stream its output to ``out``/``err``; its exit status."""
    qemu = host.tool("qemu-system-x86_64")
    cache = cache or host.cache_root()
    version = qemu_version(qemu)
    key = _verdict_key(version, assets.release)
    accels, note = _accels(config, cache, key)
    if note:
        notify(note)
    for share in job.shares:
        share.mkdir(parents=True, exist_ok=True)
    ctl = Path(tempfile.mkdtemp(prefix="vdevperf-lab-"))
    started = time.monotonic()
    g: _Guest | None = None
    ok = False
    try:
        for accel in accels:
            _reset(ctl)
            lab = record.facts(accel, assets.release, assets.source, version, config.mem_mib, config.cpus)
            env = job.env | {record.ENV_VAR: json.dumps(lab, separators=(",", ":"))}
            (ctl / "job.sh").write_text(guest.job_script(dataclasses.replace(job, env=env)))
            g = _Guest(qemu_argv(qemu, assets, job, ctl, config, accel), ctl)
            try:
                boot_s, uptime = _watch(
                    g, config, accel, probing_kvm=len(accels) > 1 and accel == "kvm", out=out, err=err
                )
            except _KvmHung as exc:
                g.stop()
                _remember_kvm(cache, key, False, str(exc))
                note = f"KVM hung at boot ({exc}); falling back to TCG"
                notify(note)
                continue
            g.stop()
            if accel == "kvm" and boot_s is not None:
                _remember_kvm(cache, key, True, "booted")
            status_file = ctl / "status"
            if not status_file.exists():
                raise VdevperfError("lab", _why_stopped(ctl, g.proc.returncode))
            ok = True
            return Outcome(
                status=int(status_file.read_text().strip()),
                accel=accel,
                qemu_version=version,
                boot_s=boot_s,
                guest_uptime_at_boot_s=uptime,
                total_s=time.monotonic() - started,
                lab=lab,
                kvm_note=note,
            )
        raise VdevperfError("lab", "no accelerator could boot the guest")
    except VdevperfError as exc:
        raise VdevperfError(exc.what, f"{exc.why} (guest console: {cache / LAST_CONSOLE})") from None
    finally:
        # Teardown must not be cut short by a second signal: qemu dies and the control dir goes.
        with held():
            if g is not None:
                g.stop()
            if not ok and (ctl / "console.log").exists():
                # Kept for a post-mortem (the control directory goes); --console shows it live.
                cache.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ctl / "console.log", cache / LAST_CONSOLE)
            shutil.rmtree(ctl, ignore_errors=True)
