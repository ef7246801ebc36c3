"""The kernel lab: pure parts without qemu, then VM boots that run the kinds this host lacks for real.

The VM tests skip with the reason when qemu-system-x86_64, a static busybox,
kmod or Debian's kernel package is missing. The main test boots once (auto
acceleration: KVM if it boots, else TCG) and runs, inside the guest, a short
compare of ipvlan (l2, l3 and l3s) and vlan (802.1Q) against veth, with the
modules of the device kinds this host lacks loaded in the same boot. A second
boot runs doctor in the guest (vlan and ipvlan l3s must be ok there) and the
vlan and ipvlan l3s paths over IPv6, server to client and request/response.
Three short boots check the exit status and output, SIGINT and --timeout;
after each, no qemu is left.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import psutil
import pytest

from vdevperf.lab import assets, cpio, guest, host, record, vm
from vdevperf.lab.host import LabUnavailable

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "vdevperf" / "schema" / "result.schema.json").read_text())
L3_TOPOLOGY = Path(__file__).parent / "ipvlan_l3.toml"
# What this project's CI kernel cannot build (no CONFIG_IPVLAN, no CONFIG_VLAN_8021Q): run here only.
L3S_TOPOLOGY = Path(__file__).parent / "ipvlan_l3s.toml"
VLAN_TOPOLOGY = Path(__file__).parent / "vlan.toml"
# Kinds this project's CI host kernel lacks; loaded in the guest in the same boot.
MISSING_ON_HOST = "ipvlan,dummy,8021q,vrf,sch_netem,sch_fq"
VM_TIMEOUT_S = 240


def lab(*args: str, timeout: float = VM_TIMEOUT_S, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdevperf", "lab", *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def lab_qemus() -> set[int]:
    """qemu processes started by any lab (their command line names the lab's root share)."""
    found = set()
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "qemu" in (proc.info["name"] or "") and any(guest.ROOT_TAG in a for a in cmdline):
            found.add(proc.pid)
    return found


# -- no qemu needed ---------------------------------------------------------------------------------------------


def _members(archive: bytes) -> dict[str, tuple[int, bytes]]:
    data, pos, found = gzip.decompress(archive), 0, {}
    while True:
        assert data[pos : pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_end = pos + 110 + namesize
        name = data[pos + 110 : name_end - 1].decode()
        start = name_end + (-name_end % 4)
        if name == "TRAILER!!!":
            return found
        found[name] = (mode, data[start : start + size])
        pos = start + size + (-(start + size) % 4)


def test_cpio_newc_round_trip():
    archive = cpio.archive(
        [
            cpio.directory("bin"),
            cpio.file("bin/x", b"abc", executable=True),
            cpio.file("init", b"#!/bin/sh\n"),
            cpio.char_device("dev/console", 5, 1),
        ]
    )
    members = _members(archive)
    assert members["bin/x"] == (0o100755, b"abc")
    assert members["init"] == (0o100644, b"#!/bin/sh\n")
    assert members["bin"][0] == 0o40755 and members["dev/console"][0] == 0o20600
    assert archive == cpio.archive(
        [
            cpio.directory("bin"),
            cpio.file("bin/x", b"abc", executable=True),
            cpio.file("init", b"#!/bin/sh\n"),
            cpio.char_device("dev/console", 5, 1),
        ]
    )


def test_job_script_quotes_everything_and_is_valid_sh(tmp_path):
    job = guest.Job(
        argv=("/usr/bin/python3", "-m", "vdevperf", "run", "a b", "it's", "$(reboot)"),
        cwd=Path("/work/with space"),
        release="6.1.0-56-amd64",
        modules_dir=Path("/c/modules/6.1.0-56"),
        shares=(Path("/tmp/o ut"),),
        env={"VDEVPERF_LAB": '{"accel": "tcg"}'},
        preload=("ipvlan",),
    )
    script = guest.job_script(job)
    (tmp_path / "job.sh").write_text(script)
    assert subprocess.run(["sh", "-n", str(tmp_path / "job.sh")]).returncode == 0
    assert "'$(reboot)'" in script and "'/tmp/o ut'" in script and "vdplab0" in script
    assert """VDEVPERF_LAB='{"accel": "tcg"}'""" in script
    assert script.rstrip().endswith("poweroff -f")


def test_output_paths_and_shares():
    cwd = Path("/w")
    assert record.output_paths(["compare", "-o", "r/x.json"], cwd) == [Path("/w/r/x.json")]
    assert record.output_paths(["run", "veth", "--output=/t/y.json"], cwd) == [Path("/t/y.json")]
    assert record.output_paths(["run", "veth", "-o/t/z.json"], cwd) == [Path("/t/z.json")]
    assert record.output_paths(["compare", "--resume", "old.json"], cwd) == [Path("/w/old.json")]
    assert record.shares_for(["compare", "ipvlan"], cwd, []) == (Path("/w/results"),)
    assert record.shares_for(["compare", "-o", "/t/a.json"], cwd, [Path("/t/sub"), Path("/t")]) == (
        Path("/t"),
        Path("/t/sub"),
    )
    assert record.shares_for(["doctor"], cwd, []) == ()
    with pytest.raises(ValueError, match="root directory"):
        record.shares_for(["run", "veth", "-o", "/x.json"], cwd, [])


def test_new_results_finds_fresh_result_files_only(tmp_path):
    old = tmp_path / "old.json"
    old.write_text('{"schema_version": 4}')
    os.utime(old, (1, 1))
    (tmp_path / "other.json").write_text('{"kind": "not a result"}')
    (tmp_path / "new.json").write_text('{"schema_version": 4}')
    assert record.new_results(["compare"], tmp_path, [tmp_path], time.time() - 60) == [tmp_path / "new.json"]
    sidecar = record.write_sidecar(tmp_path / "new.json", {"emulated": True}, {"exit_status": 0})
    assert sidecar.name == "new.json.lab" and json.loads(sidecar.read_text())["lab"] == {"emulated": True}


def test_kernel_release_from_bzimage_header(tmp_path):
    image = bytearray(0x400)
    image[0x202:0x206] = b"HdrS"
    image[0x20E:0x210] = (0x100).to_bytes(2, "little")
    image[0x300:0x320] = b"6.1.0-99-amd64 (debian@x) #1\0".ljust(0x20, b"\0")
    (tmp_path / "bz").write_bytes(bytes(image))
    assert assets.kernel_release(tmp_path / "bz") == "6.1.0-99-amd64"
    (tmp_path / "elf").write_bytes(b"\x7fELF" + bytes(0x300))
    with pytest.raises(assets.VdevperfError, match="not an x86 bzImage"):
        assets.kernel_release(tmp_path / "elf")


def test_interrupted_build_leaves_nothing_a_later_build_trusts(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".build-debian-x-{dead.pid}-abc123"
    stale.mkdir()
    live = tmp_path / f".build-debian-x-{os.getpid()}-def456"
    live.mkdir()
    temp = assets._build_dir(tmp_path, "debian-x")
    assert not stale.exists() and live.exists() and temp.exists()
    final = tmp_path / "debian-x"
    final.mkdir()  # another builder finished first: its result stays, ours goes
    (final / "kernel.json").write_text("{}")
    assets._publish(temp, final)
    assert not temp.exists() and (final / "kernel.json").exists()


def test_missing_tools_say_how_to_install(monkeypatch):
    monkeypatch.setattr(host.shutil, "which", lambda *a, **k: None)
    with pytest.raises(
        LabUnavailable,
        match=r"qemu-system-x86_64 not found; install it with: "
        r"apt-get install -y qemu-system-x86",
    ):
        host.tool("qemu-system-x86_64")
    monkeypatch.setattr(host, "has_interpreter", lambda path: True)
    with pytest.raises(LabUnavailable, match="apt-get install -y busybox-static"):
        host.static_busybox()


def test_bad_flags_are_one_line_errors():
    done = lab("--accel", "xen", "--", "doctor", timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("vdevperf: usage:") and "xen" in done.stderr
    done = lab("--mem", "64", "--", "doctor", timeout=60)
    assert done.returncode == 2
    assert done.stderr == "vdevperf: --mem: 64 MiB is too little for the guest (128 at least)\n"
    done = lab(timeout=60)
    assert done.returncode == 2 and "nothing to run" in done.stderr


def test_vm_config_checks_itself():
    with pytest.raises(ValueError, match="--accel"):
        vm.VmConfig(accel="xen")
    with pytest.raises(ValueError, match="--cpus"):
        vm.VmConfig(cpus=0)


# -- one real boot (plus three short ones) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel() -> assets.KernelAssets:
    """Debian's kernel and the initramfs, built into the cache (cold: ~10 s); skip if they cannot be had."""
    try:
        return assets.debian_kernel()
    except LabUnavailable as exc:
        pytest.skip(f"the lab cannot run here: {exc.why}")


@pytest.fixture(scope="module")
def ipvlan_run(kernel, tmp_path_factory):
    """One boot: a short compare of ipvlan l2, l3 and l3s, vlan and veth inside the guest."""
    out = tmp_path_factory.mktemp("lab")
    before = lab_qemus()
    started = time.monotonic()
    done = lab(
        "--accel",
        "auto",
        "--timeout",
        str(VM_TIMEOUT_S - 10),
        "--modprobe",
        MISSING_ON_HOST,
        "--",
        "compare",
        "ipvlan",
        str(L3_TOPOLOGY),
        str(L3S_TOPOLOGY),
        str(VLAN_TOPOLOGY),
        "veth",
        "-t",
        "TCP_STREAM,TCP_RR",
        "-l",
        "1",
        "--warmup",
        "0.2",
        "--rounds",
        "2",
        "-o",
        str(out / "lab.json"),
        cwd=REPO,
    )
    elapsed = time.monotonic() - started
    print(f"lab compare: {elapsed:.1f} s\n{done.stderr}")
    return done, out, before, elapsed


def test_ipvlan_runs_in_the_lab(kernel, ipvlan_run):
    done, out, before, _ = ipvlan_run
    assert done.returncode == 0, done.stderr
    document = json.loads((out / "lab.json").read_text())
    jsonschema.validate(document, SCHEMA)
    # Written by the guest's vdevperf, through the writable share, with the guest kernel recorded.
    assert document["environment"]["kernel"] == kernel.release
    assert document["environment"]["hostname"] == "vdevperf-lab"
    runs = {(r["topology"], r["test"]): r for r in document["runs"]}
    # Each built with its own kind (a kind the kernel lacks fails the build, it is never replaced).
    for topology in ("ipvlan", "ipvlan-l3", "ipvlan-l3s", "vlan", "veth"):
        stream, rr = runs[(topology, "TCP_STREAM")], runs[(topology, "TCP_RR")]
        assert stream["status"] == "ok" and rr["status"] == "ok", (stream["reason"], rr["reason"])
        assert stream["metrics"]["throughput_mbps"] > 0
        assert rr["metrics"]["transactions_per_s"] > 0
    assert "ipvlan" in done.stdout and "unsupported" not in done.stdout
    assert lab_qemus() <= before


def test_lab_run_is_marked_with_guest_kernel_and_emulation(kernel, ipvlan_run):
    done, out, _, _ = ipvlan_run
    facts = json.loads((out / "lab.json.lab").read_text())["lab"]
    assert facts["guest_kernel"] == kernel.release
    assert facts["accel"] in ("kvm", "tcg") and facts["emulated"] == (facts["accel"] == "tcg")
    assert facts["kernel_source"].startswith("debian:linux-image-")
    if facts["emulated"]:
        assert "TCG emulation: figures are functional checks, not performance figures" in done.stderr


def test_doctor_and_ipv6_paths_in_the_lab(kernel, ipvlan_run):
    """doctor in a kernel that has vlan and ipvlan l3s calls them ok; both paths pass IPv6 traffic."""
    before = lab_qemus()
    python = [sys.executable, "-m", "vdevperf"]
    compare = [
        *python,
        "compare",
        str(VLAN_TOPOLOGY),
        str(L3S_TOPOLOGY),
        "-6",
        "-t",
        "TCP_MAERTS,UDP_RR",
        "-l",
        "0.5",
        "--warmup",
        "0.1",
        "--rounds",
        "1",
        "--json",
    ]
    script = f"{shlex.join([*python, 'doctor'])} && echo ==== && {shlex.join(compare)}"
    done = lab("--accel", "tcg", "-q", "--timeout", str(VM_TIMEOUT_S - 10), "--exec", "--", "/bin/sh", "-c", script)
    assert done.returncode == 0, done.stderr
    report, _, compared = done.stdout.partition("====\n")
    lines = report.splitlines()
    assert f"kernel: {kernel.release}" in lines
    for label in ("vlan", "ipvlan mode l2", "ipvlan mode l3", "ipvlan mode l3s", "feature forwarding", "feature route"):
        assert f"{label}: ok" in lines, report
    runs = {(r["topology"], r["test"]): r for r in json.loads(compared)["runs"]}
    for topology in ("vlan", "ipvlan-l3s"):
        maerts, rr = runs[(topology, "TCP_MAERTS")], runs[(topology, "UDP_RR")]
        assert maerts["status"] == "ok" and rr["status"] == "ok", (maerts["reason"], rr["reason"])
        assert maerts["config"]["ip_version"] == 6
        assert maerts["metrics"]["throughput_mbps"] > 0 and rr["metrics"]["transactions_per_s"] > 0
    assert lab_qemus() <= before


def test_exit_status_and_output_come_back(kernel, ipvlan_run):
    before = lab_qemus()
    done = lab(
        "--accel",
        "tcg",
        "-q",
        "--exec",
        "--",
        "/bin/sh",
        "-c",
        "uname -r; echo to-stderr >&2; test -e /lib/modules/$(uname -r)/modules.dep || exit 9; exit 3",
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == f"{kernel.release}\n"
    assert done.stderr == "to-stderr\n"
    assert lab_qemus() <= before


def _wait_for_qemu(proc: subprocess.Popen, before: set[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if lab_qemus() - before:
            return
        time.sleep(0.1)
    raise AssertionError("qemu did not start")


def test_sigint_kills_qemu_and_dies_by_the_signal(kernel, ipvlan_run):
    before = lab_qemus()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vdevperf", "lab", "--accel", "tcg", "--exec", "--", "sleep", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_qemu(proc, before)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGINT, stderr
    assert "interrupted by SIGINT" in stderr
    assert lab_qemus() <= before


def test_timeout_stops_the_guest(kernel, ipvlan_run):
    before = lab_qemus()
    done = lab("--accel", "tcg", "--timeout", "2", "--exec", "--", "sleep", "60", timeout=60)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "vdevperf: lab: the guest command did not finish within 2 s (--timeout); qemu was stopped (guest console: "
        )
    )
    assert lab_qemus() <= before
