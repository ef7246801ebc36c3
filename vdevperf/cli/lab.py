"""``vdevperf lab``: the flags, and the command that boots the guest and runs a vdevperf command in it.

``vdevperf.cli`` adds the subcommand with ``add_parser(subparsers)`` and dispatches
to ``cmd_lab``. Like the other commands this is a thin layer: flags become an
``assets`` call and a ``vm.VmConfig``, the guest's output is streamed through,
and the guest command's exit status is returned.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import vdevperf
from vdevperf.cli.argtypes import modules, seconds, whole
from vdevperf.cli.common import Subparsers
from vdevperf.errors import VdevperfError, refused
from vdevperf.lab import assets, guest, record, vm

HELP = "run a vdevperf command under another kernel, in a qemu VM (Debian's kernel by default)"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add the ``lab`` subcommand to ``subparsers``; the parser added."""
    p = subparsers.add_parser(
        "lab",
        help=HELP,
        description=HELP + ". The host's root is visible read-only, "
        "writes go to a tmpfs overlay, result files come back through writable shares "
        "(the -o file's directory, else ./results), and the guest has no network device.",
    )
    kernel = p.add_mutually_exclusive_group()
    kernel.add_argument(
        "--kernel",
        type=Path,
        metavar="PATH",
        help="boot this bzImage (with --modules, or /lib/modules/<release> if present)",
    )
    kernel.add_argument(
        "--debian-kernel",
        nargs="?",
        const=assets.DEBIAN_METAPACKAGE,
        metavar="PACKAGE",
        help=f"boot Debian's kernel package (default: {assets.DEBIAN_METAPACKAGE}; fetched with "
        "apt-get download into the cache); the default",
    )
    p.add_argument("--modules", type=Path, metavar="DIR", help="with --kernel: its lib/modules/<release> directory")
    p.add_argument("--mem", type=whole(), default=256, metavar="MiB", help="guest memory (default 256)")
    p.add_argument("--cpus", type=whole(), default=2, help="guest CPUs (default 2)")
    p.add_argument(
        "--accel",
        choices=vm.ACCELS,
        default="auto",
        help="kvm, tcg (emulation: figures are functional checks only) or auto: KVM when it boots "
        "within a bounded time, else TCG (default)",
    )
    p.add_argument("--timeout", type=seconds, metavar="S", help="stop the guest after S seconds (default: none)")
    p.add_argument(
        "--share",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="also let the guest write to DIR on the host (mounted at the same path)",
    )
    p.add_argument(
        "--modprobe",
        type=modules,
        default=[],
        metavar="MOD[,MOD]",
        help="load these modules before the command (device kinds are also loaded on demand)",
    )
    p.add_argument("--exec", action="store_true", help="COMMAND is a program to run, not vdevperf arguments")
    p.add_argument("--prepare", action="store_true", help="only fetch and build the kernel and initramfs")
    p.add_argument("--console", action="store_true", help="show the guest's console (kernel, /init) on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="no lab notes on stderr (the command's output stays)")
    p.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="-- COMMAND: vdevperf arguments (e.g. -- compare ipvlan veth -l 2), or a program with --exec",
    )
    return p


def _assets(args: argparse.Namespace) -> assets.KernelAssets:
    if args.modules is not None and args.kernel is None:
        raise VdevperfError("--modules", "goes with --kernel")
    if args.kernel is not None:
        return assets.custom_kernel(args.kernel, args.modules)
    return assets.debian_kernel(args.debian_kernel or assets.DEBIAN_METAPACKAGE)


def _guest_argv(args: argparse.Namespace, command: list[str]) -> list[str]:
    if args.exec:
        return command
    if command[:1] == ["vdevperf"]:
        command = command[1:]
    return [sys.executable, "-m", "vdevperf", *command]


def _guest_env() -> dict[str, str]:
    # The vdevperf that runs in the guest is this one, installed or not.
    package_root = str(Path(vdevperf.__file__).resolve().parent.parent)
    paths = [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def cmd_lab(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Boot a kernel in qemu, run the command in it, stream its output; the command's exit status."""
    command = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not command and not args.prepare:
        raise VdevperfError(
            "lab", "nothing to run: give a vdevperf command after --, e.g. vdevperf lab -- compare ipvlan veth -l 2"
        )

    def note(message: str) -> None:
        if not args.quiet:
            print(f"lab: {message}", file=sys.stderr, flush=True)

    try:
        config = vm.VmConfig(
            mem_mib=args.mem, cpus=args.cpus, accel=args.accel, timeout_s=args.timeout, console=args.console
        )
    except ValueError as exc:
        raise refused(exc) from None
    cwd = Path.cwd()
    try:
        shares = record.shares_for([] if args.exec else command, cwd, args.share)
    except ValueError as exc:
        raise refused(exc) from None
    built = _assets(args)
    note(
        f"kernel {built.release} ({built.source}), {'cached' if built.cached else 'built'} in "
        f"{built.build_s:.1f} s: {built.kernel.parent}"
    )
    if args.prepare:
        return 0
    job = guest.Job(
        argv=tuple(_guest_argv(args, command)),
        cwd=cwd,
        release=built.release,
        modules_dir=built.modules_dir,
        shares=shares,
        env=_guest_env(),
        preload=tuple(args.modprobe),
    )
    started = time.time()
    outcome = vm.run(built, job, config, sys.stdout.buffer, sys.stderr.buffer, notify=note)
    sys.stdout.flush()
    results = [] if args.exec else record.new_results(command, cwd, shares, started - 1)
    run_facts = {
        "command": command,
        "exit_status": outcome.status,
        "boot_s": _round(outcome.boot_s),
        "guest_uptime_at_boot_s": outcome.guest_uptime_at_boot_s,
        "total_s": _round(outcome.total_s),
    }
    for result in results:
        note(f"lab facts of {result} in {record.write_sidecar(result, outcome.lab, run_facts)}")
    kind = "TCG emulation: figures are functional checks, not performance figures" if outcome.lab["emulated"] else "KVM"
    boot = f"boot {outcome.boot_s:.1f} s, " if outcome.boot_s is not None else ""
    note(
        f"guest kernel {built.release} under {kind}; {boot}total {outcome.total_s:.1f} s; exit status {outcome.status}"
    )
    return outcome.status


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
