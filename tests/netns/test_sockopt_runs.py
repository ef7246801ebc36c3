"""Socket-level load options for real: TCP_SENDFILE really calls sendfile(2), -K and -D reach both ends,
-Z's sends are MSG_ZEROCOPY ones the kernel completes."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vdevperf import bench
from vdevperf.counters import BYTES_SENT, SLOTS
from vdevperf.load import stream
from vdevperf.load.context import Loop, LoopContext
from vdevperf.load.roles import usable_congestion_controls
from vdevperf.model import TestConfig, TestName
from vdevperf.topology import netns
from vdevperf.topology.builder import build
from vdevperf.topology.spec import load_topology

REPO = Path(__file__).resolve().parents[2]
SHORT = {"duration_s": 0.5, "warmup_s": 0.1, "interval_s": 0.25}
MOVED = 8 * 1024**2


def _rchar() -> int:
    """Bytes this thread read through read-like syscalls: sendfile(2) counts here, send(2) does not."""
    text = Path("/proc/thread-self/io").read_text()
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("rchar:")))


def _drive(loop: Loop, test: TestName) -> tuple[int, int]:
    """Run a stream sender over a local socket pair until its peer has read MOVED bytes and hung up;
    (bytes the loop counted, rchar this thread gained meanwhile)."""
    ours, peer = socket.socketpair()

    def drain() -> None:
        got = 0
        buf = bytearray(65536)
        while got < MOVED:
            got += peer.recv_into(buf)
        peer.close()

    reader = threading.Thread(target=drain)
    reader.start()
    slots = memoryview(bytearray(8 * len(SLOTS))).cast("q")
    cfg = TestConfig(test=test, send_size=65536)
    before = _rchar()
    with pytest.raises(OSError):  # the peer hung up: EPIPE or ECONNRESET ends the loop
        loop(LoopContext(ours, cfg, slots, memoryview(bytearray(0)).cast("q")))
    gained = _rchar() - before
    reader.join()
    ours.close()
    return slots[BYTES_SENT], gained


def test_tcp_sendfile_sends_with_sendfile_and_tcp_stream_does_not():
    sent, gained = _drive(stream.LOOPS[TestName.TCP_SENDFILE][0], TestName.TCP_SENDFILE)
    assert sent >= MOVED and gained >= sent  # every byte it counted went through sendfile(2)
    sent, gained = _drive(stream.LOOPS[TestName.TCP_STREAM][0], TestName.TCP_STREAM)
    assert sent >= MOVED and gained < 65536  # the control: send(2) reads no file


@pytest.fixture(scope="module")
def veth():
    with build(load_topology("veth")) as topo:
        yield topo


def _facts(result) -> dict[str, dict]:
    return {e["role"]: e["socket"] for e in result.iterations[-1].endpoints}


def test_tcp_sendfile_moves_what_its_client_sent(veth):
    result = bench.measure(veth, TestConfig(test=TestName.TCP_SENDFILE, **SHORT))
    ends = {e["role"]: e["final_counters"] for e in result.iterations[-1].endpoints}
    assert result.metrics.throughput_mbps > 10
    surplus = ends["server"]["bytes_received"] - ends["client"]["bytes_sent"]
    assert 0 <= surplus <= result.config.send_size  # at most the call the stop interrupted


def _other_cc(default: str) -> str:
    choices = sorted(usable_congestion_controls() - {default})
    if not choices:
        pytest.skip("the kernel has only one congestion control loaded")
    return "reno" if "reno" in choices else choices[0]


@pytest.mark.parametrize("test", [TestName.TCP_STREAM, TestName.TCP_RR, TestName.TCP_CRR])
def test_congestion_control_and_nodelay_reach_both_ends(veth, test):
    plain = _facts(bench.measure(veth, TestConfig(test=test, **SHORT)))
    assert plain["client"]["nodelay"] == plain["server"]["nodelay"] == 0
    default = plain["client"]["congestion_control"]
    cc = _other_cc(default)
    result = bench.measure(veth, TestConfig(test=test, congestion_control=cc, nodelay=True, **SHORT))
    facts = _facts(result)  # read back with getsockopt inside each endpoint
    for role in ("client", "server"):
        assert facts[role]["congestion_control"] == cc != default
        assert facts[role]["nodelay"] == 1
    assert result.config.congestion_control == cc and result.config.nodelay


def _vdevperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdevperf", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


@pytest.mark.parametrize(
    "argv, line",
    [
        (["-K", "nosuchcc"], "vdevperf: -K: congestion control 'nosuchcc' is not loaded here; use one of "),
        (["-K", "Reno!"], "-K/--congestion: 'Reno!' is not a congestion control name"),
        (["-t", "UDP_STREAM", "-D"], "vdevperf: -D: a TCP socket option; UDP_STREAM runs over UDP"),
        (["-t", "UDP_RR", "-K", "reno"], "vdevperf: -K: a TCP socket option; UDP_RR runs over UDP"),
        (["-t", "TCP_RR", "-Z"], "vdevperf: -Z: MSG_ZEROCOPY sends are for TCP_STREAM, TCP_MAERTS, not TCP_RR"),
    ],
)
def test_a_refused_socket_option_is_one_line_exit_2_and_builds_nothing(argv, line):
    before = set(netns.list_ours())
    proc = _vdevperf("run", "veth", "-l", "0.5", *argv)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and line in lines[0], proc.stderr
    assert set(netns.list_ours()) == before


def _counters(result) -> dict[str, dict[str, int]]:
    return {e["role"]: e["final_counters"] for e in result.iterations[-1].endpoints}


@pytest.mark.parametrize("test, sender", [(TestName.TCP_STREAM, "client"), (TestName.TCP_MAERTS, "server")])
def test_zerocopy_sends_are_completed_by_the_kernel_and_counted(veth, test, sender):
    plain = _counters(bench.measure(veth, TestConfig(test=test, **SHORT)))[sender]
    assert plain["zerocopy_sends"] == plain["zerocopy_copied"] == 0
    result = bench.measure(veth, TestConfig(test=test, zerocopy=True, **SHORT))
    ends = _counters(result)
    completed = ends[sender]["zerocopy_sends"] + ends[sender]["zerocopy_copied"]
    # A completion exists only for a MSG_ZEROCOPY send; all but the last ring's worth are in by the end.
    assert ends[sender]["messages_sent"] - stream.ZEROCOPY_RING <= completed <= ends[sender]["messages_sent"]
    assert completed > 100 and result.metrics.throughput_mbps > 10
    receiver = "server" if sender == "client" else "client"
    surplus = ends[receiver]["bytes_received"] - ends[sender]["bytes_sent"]
    assert 0 <= surplus <= result.config.send_size  # every byte arrived despite the rotating buffers
    assert result.config.zerocopy
