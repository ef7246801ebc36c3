"""What runs inside the guest: the initramfs's /init and the per-run job script.

/init (PID 1, busybox sh) loads the virtio, 9p and overlay modules, mounts
the host's root read-only over 9p with a tmpfs overlay on top (the guest may
write anywhere; nothing reaches the host), mounts the control share, then
makes that root its own (switch_root) and runs the job as PID 1, which
powers the guest off when done. The job, written by
the host into the control share for each run, points /lib/modules at the
guest kernel's unpacked modules, mounts the writable result shares at their
host paths, and runs the command with its output, and then its exit status,
going to files in the control share. The guest has no network device; the
command's traffic stays in the namespaces it creates.

Protocol with the host (``vm.py``), files in the control share:
  stdout, stderr  the command's output (the host creates them empty and tails them)
  booted          written once the root is ready: the guest's uptime in seconds
  status          the command's exit status, written last
  error           why the guest gave up before running the command
and the console line ``READY_MARKER`` as soon as /init starts (KVM detection).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT_TAG = "vdplabroot"
CTL_TAG = "vdplabctl"
SHARE_TAG = "vdplab{}"
READY_MARKER = "vdevperf-lab: init started"
ERROR_PREFIX = "vdevperf-lab: error: "
# Where the initramfs keeps the modules it loads, and the list giving their order.
MODULE_DIR = "lib/lab"
MODULE_LIST = f"{MODULE_DIR}/modules"
# Inside the guest's root: the control share and a copy of busybox (the host may have neither).
GUEST_LAB = "/run/vdevperf-lab"
GUEST_CTL = f"{GUEST_LAB}/ctl"
GUEST_BUSYBOX = f"{GUEST_LAB}/bin/busybox"
# msize: 9p's largest message; the default (8 KiB) makes Python's imports slow under TCG.
_P9 = "trans=virtio,version=9p2000.L,msize=512000"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

INIT = f"""#!/bin/busybox sh
# vdevperf lab guest init (PID 1); see vdevperf/lab/guest.py.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "{READY_MARKER}"
fail() {{
    echo "{ERROR_PREFIX}$*"
    [ -d /ctl/. ] && echo "$*" > /ctl/error
    sync
    poweroff -f
}}
while read -r module; do
    insmod "/{MODULE_DIR}/$module" || fail "insmod $module failed"
done < /{MODULE_LIST}
mkdir -p /ctl /lower /rw /newroot
mount -t 9p -o {_P9} {CTL_TAG} /ctl \
    || fail "cannot mount the control share: the kernel needs virtio-pci, 9p and overlay (built in, or --modules)"
mount -t 9p -o {_P9},ro,cache=loose {ROOT_TAG} /lower || fail "cannot mount the host root (9p over virtio)"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \\
    || fail "cannot put the tmpfs overlay on the host root"
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot{GUEST_CTL} /newroot{GUEST_LAB}/bin
mount --bind /ctl /newroot{GUEST_CTL}
cp /bin/busybox /newroot{GUEST_BUSYBOX}
# switch_root, not chroot: the kernel runs /sbin/modprobe (device kinds loaded on demand) in PID 1's root.
exec switch_root /newroot {GUEST_BUSYBOX} sh {GUEST_CTL}/job.sh
"""


@dataclass(frozen=True)
class Job:
    """One command to run in the guest, and what the guest must set up for it."""

    argv: tuple[str, ...]
    cwd: Path
    release: str
    modules_dir: Path | None
    shares: tuple[Path, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    preload: tuple[str, ...] = ()


def share_tag(index: int) -> str:
    """The 9p mount tag of the index-th writable share."""
    return SHARE_TAG.format(index)


def job_script(job: Job) -> str:
    """The shell script that sets up and runs ``job`` (busybox sh as PID 1, in the guest's root)."""
    q = shlex.quote
    lines = [
        "# vdevperf lab job, written by the host for one run; see vdevperf/lab/guest.py.",
        f"bb={GUEST_BUSYBOX}",
        f"ctl={GUEST_CTL}",
        f"export PATH={GUEST_PATH}",
        'fail() { echo "$*" > "$ctl/error"; $bb sync; $bb poweroff -f; }',
        "$bb hostname vdevperf-lab",
    ]
    if job.modules_dir is not None:
        target = q(f"/lib/modules/{job.release}")
        lines += [
            f"$bb mkdir -p {target} && $bb mount --bind {q(str(job.modules_dir))} {target} "
            f"|| fail 'cannot bind the guest kernel modules on /lib/modules/{job.release}'"
        ]
    for index, share in enumerate(job.shares):
        lines += [
            f"$bb mount -t 9p -o {_P9} {share_tag(index)} {q(str(share))} "
            f"|| fail {q(f'cannot mount the writable share {share}')}"
        ]
    for module in job.preload:
        lines += [f"modprobe {q(module)} || fail {q(f'modprobe {module} failed')}"]
    env = {"PATH": GUEST_PATH, "HOME": "/root", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"} | job.env
    assignments = " ".join(f"{k}={q(v)}" for k, v in env.items())
    lines += [
        "$bb cut -d ' ' -f 1 /proc/uptime > \"$ctl/booted\"",
        f"cd {q(str(job.cwd))} || fail {q(f'no directory {job.cwd} in the guest')}",
        f'$bb env -i {assignments} {" ".join(map(q, job.argv))} < /dev/null > "$ctl/stdout" 2> "$ctl/stderr"',
        'echo $? > "$ctl/status.new" && $bb mv "$ctl/status.new" "$ctl/status"',
        "$bb sync",
        "$bb poweroff -f",
    ]
    return "\n".join(lines) + "\n"
