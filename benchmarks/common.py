"""Helpers shared by the benchmark scripts: external tools run inside topology namespaces."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from vdevperf.topology.netns import move_to

IPERF3_PORT = 5201
SOCKPERF_PORT = 11111
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def alternate(
    rounds: int, ours: Callable[[], float], theirs: Callable[[], float], tool: str, units: str, label: str = ""
) -> float:
    """Run both measurements ``rounds`` times, alternating which goes first (slow drift of the
    machine hits both alike), print each round and the medians; return the ratio ours/theirs."""
    mine, other = [], []
    prefix = f"{label} " if label else ""
    for n in range(rounds):
        order = ((mine, ours), (other, theirs)) if n % 2 == 0 else ((other, theirs), (mine, ours))
        for figures, measure in order:
            figures.append(measure())
        print(f"{prefix}round {n + 1}: vdevperf {mine[-1]:,.0f}  {tool} {other[-1]:,.0f}  ({units})", flush=True)
    a, b = statistics.median(mine), statistics.median(other)
    print(f"{prefix}median: vdevperf {a:,.0f}  {tool} {b:,.0f}  ratio vdevperf/{tool} = {a / b:.3f}")
    return a / b


def require(tool: str, package: str) -> str:
    """Path of ``tool`` or exit with the command that installs it."""
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"benchmark: {tool} not found; install it with: apt-get install -y {package}")
    return path


def popen_in(netns_path: str, argv: list[str], cpu: int | None = None, **kwargs) -> subprocess.Popen:
    """Start ``argv`` inside the namespace at ``netns_path`` (setns in the child, no `ip netns exec`),
    pinned to ``cpu`` if given.

    The child is killed if this process dies, even by SIGKILL, so it cannot outlive the topology.
    """

    def child() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        move_to(netns_path)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return subprocess.Popen(argv, preexec_fn=child, **kwargs)


def _stop(proc: subprocess.Popen) -> None:
    """Kill ``proc`` (by its pid, only if it still runs) and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _listening(pid: int, port: int) -> bool:
    """True if a TCP socket listens on ``port`` in the network namespace of process ``pid``."""
    with open(f"/proc/{pid}/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return any(row[1].endswith(f":{port:04X}") and row[3] == "0A" for row in rows)


def _wait_listening(proc: subprocess.Popen, port: int, what: str) -> None:
    deadline = time.monotonic() + 5.0
    while not _listening(proc.pid, port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} server did not start listening")
        time.sleep(0.02)


def sockperf_tcp_rr(
    server_ns: str,
    client_ns: str,
    address: str,
    seconds: int,
    message_size: int,
    client_cpu: int | None,
    server_cpu: int | None,
    on_spawn: Callable[[int], None] = lambda pid: None,
) -> float:
    """Round trips per second of ``sockperf ping-pong --tcp`` (its valid-duration figures)."""
    sockperf = require("sockperf", "sockperf")
    server = popen_in(
        server_ns,
        [sockperf, "server", "--tcp", "-i", address, "-p", str(SOCKPERF_PORT)],
        cpu=server_cpu,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = None
    try:
        on_spawn(server.pid)
        _wait_listening(server, SOCKPERF_PORT, "sockperf")
        client = popen_in(
            client_ns,
            [
                sockperf,
                "ping-pong",
                "--tcp",
                "-i",
                address,
                "-p",
                str(SOCKPERF_PORT),
                "-t",
                str(seconds),
                "-m",
                str(message_size),
            ],
            cpu=client_cpu,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        on_spawn(client.pid)
        out, _ = client.communicate(timeout=seconds + 30)
        found = re.search(r"RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)", out)
        if client.returncode != 0 or found is None:
            raise RuntimeError(f"sockperf client failed: {out.strip().splitlines()[-1:] or client.returncode}")
        return int(found.group(3)) / float(found.group(1))
    finally:
        for proc in (client, server):
            if proc is not None:
                _stop(proc)


def iperf3_stream(
    server_ns: str,
    client_ns: str,
    address: str,
    seconds: int,
    warmup: int,
    parallel: int = 1,
    on_spawn: Callable[[int], None] = lambda pid: None,
    udp_size: int | None = None,
    cpus: tuple[int | None, int | None] = (None, None),
) -> float:
    """iperf3 TCP throughput in 10^6 bits/s, counted at the receiver, warm-up omitted; with
    ``udp_size``, ``iperf3 -u -b 0 -l udp_size`` and the datagrams received per second instead.

    iperf3 truncates -t and -O to whole seconds, hence the ints. ``on_spawn(pid)``
    learns each iperf3 pid (pass the topology ledger's ``add_pids``); ``cpus`` pins
    (client, server) as vdevperf's -T does.
    """
    iperf3 = require("iperf3", "iperf3")
    server = popen_in(
        server_ns, [iperf3, "-s", "-1", "-B", address, "-p", str(IPERF3_PORT)], cpu=cpus[1], stdout=subprocess.DEVNULL
    )
    client = None
    try:
        on_spawn(server.pid)
        _wait_listening(server, IPERF3_PORT, "iperf3")
        client = popen_in(
            client_ns,
            [
                iperf3,
                "-c",
                address,
                "-p",
                str(IPERF3_PORT),
                "-t",
                str(seconds),
                "-O",
                str(warmup),
                "-P",
                str(parallel),
                "--json",
                *(["-u", "-b", "0", "-l", str(udp_size)] if udp_size is not None else []),
            ],
            cpu=cpus[0],
            stdout=subprocess.PIPE,
        )
        on_spawn(client.pid)
        stdout, _ = client.communicate(timeout=seconds + warmup + 30)
        report = json.loads(stdout or "{}")
        if client.returncode != 0 or "error" in report:
            raise RuntimeError(f"iperf3 client failed: {report.get('error', client.returncode)}")
        received = report["end"]["sum_received"]
        if udp_size is not None:
            return received["bits_per_second"] / 8 / udp_size
        return received["bits_per_second"] / 1e6
    finally:
        for proc in (client, server):
            if proc is not None:
                _stop(proc)
