"""Helpers shared by the benchmark scripts: external tools run inside topology namespaces."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from vdevperf.topology.netns import move_to


def require(tool: str, package: str) -> str:
    """Path of ``tool`` or exit with the command that installs it."""
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"benchmark: {tool} not found; install it with: apt-get install -y {package}")
    return path


def popen_in(netns_path: str, argv: list[str], **kwargs) -> subprocess.Popen:
    """Start ``argv`` inside the namespace at ``netns_path`` (setns in the child, no `ip netns exec`)."""
    return subprocess.Popen(argv, preexec_fn=lambda: move_to(netns_path), **kwargs)


def iperf3_stream(server_ns: str, client_ns: str, address: str, seconds: float, warmup: float,
                  parallel: int = 1) -> float:
    """iperf3 TCP throughput in 10^6 bits/s, counted at the receiver, warm-up omitted."""
    iperf3 = require("iperf3", "iperf3")
    server = popen_in(server_ns, [iperf3, "-s", "-1", "-B", address], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        client = popen_in(client_ns, [iperf3, "-c", address, "-t", str(seconds), "-O", str(int(warmup)),
                                      "-P", str(parallel), "--json"], stdout=subprocess.PIPE)
        stdout, _ = client.communicate(timeout=seconds + warmup + 30)
        report = json.loads(stdout)
        return report["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        server.kill()
        server.wait()
