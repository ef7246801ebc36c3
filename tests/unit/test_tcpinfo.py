"""TCP_INFO: struct tcp_info decoded by offset, the window's retransmits, borrowed sockets, where it shows.

The struct is built here from linux/tcp.h's declaration, written out field by
field (not from the parser's offset table), so a wrong offset there fails.
"""

import dataclasses
import json
import os
import socket
import struct
from pathlib import Path

import jsonschema
import pytest

from vdevperf import bench
from vdevperf.counters import BYTES_RECEIVED, SLOTS, counter_names, slot_index
from vdevperf.load.borrowed import Borrowed
from vdevperf.measure import cpu, tcpinfo
from vdevperf.measure.endpoints import EndpointReport, Finished, Ready, SocketFacts
from vdevperf.measure.metrics import derive, summarize
from vdevperf.measure.sample import RawRun, Sample
from vdevperf.model import RunResult, RunStatus, TestConfig, TestName
from vdevperf.report.table import run_table
from vdevperf.results import ResultFile, load, run_from_json
from vdevperf.traits import TRAITS

TCP_FACTS = {"sndbuf_bytes": 1, "rcvbuf_bytes": 1, "congestion_control": "cubic", "nodelay": 0}
SCHEMA = json.loads((Path(__file__).parents[2] / "vdevperf" / "schema" / "result.schema.json").read_text())

# struct tcp_info of linux/tcp.h up to tcpi_snd_wnd (232 bytes), in declaration order.
U8 = "state ca_state retransmits probes backoff options wscale app_limited_bits".split()
U32 = (
    "rto ato snd_mss rcv_mss unacked sacked lost retrans fackets last_data_sent last_ack_sent last_data_recv "
    "last_ack_recv pmtu rcv_ssthresh rtt rttvar snd_ssthresh snd_cwnd advmss reordering rcv_rtt rcv_space "
    "total_retrans"
).split()
TAIL = [
    ("pacing_rate", "Q"),
    ("max_pacing_rate", "Q"),
    ("bytes_acked", "Q"),
    ("bytes_received", "Q"),
    *((name, "I") for name in "segs_out segs_in notsent_bytes min_rtt data_segs_in data_segs_out".split()),
    *((name, "Q") for name in "delivery_rate busy_time rwnd_limited sndbuf_limited".split()),
    ("delivered", "I"),
    ("delivered_ce", "I"),
    ("bytes_sent", "Q"),
    ("bytes_retrans", "Q"),
    *((name, "I") for name in "dsack_dups reord_seen rcv_ooopack snd_wnd".split()),
]
NAMES = U8 + U32 + [name for name, _ in TAIL]
LAYOUT = struct.Struct("=" + "B" * len(U8) + "I" * len(U32) + "".join(fmt for _, fmt in TAIL))


def tcp_info_bytes(**values: int) -> bytes:
    """A struct tcp_info with each named field set (the rest 0), as the kernel returns it."""
    assert set(values) <= set(NAMES)
    return LAYOUT.pack(*(values.get(name, 0) for name in NAMES))


KNOWN = {
    "retransmits": 3,
    "app_limited_bits": 0b101,  # delivery_rate_app_limited is bit 0; fastopen_client_fail the next two
    "snd_mss": 1448,
    "lost": 7,
    "retrans": 2,
    "rtt": 1234,
    "rttvar": 56,
    "snd_ssthresh": 2147483647,
    "snd_cwnd": 10,
    "total_retrans": 99,
    "pacing_rate": 5 * 10**9,
    "max_pacing_rate": 2**64 - 1,
    "bytes_acked": 10**12,
    "bytes_received": 77,
    "min_rtt": 8,
    "delivery_rate": 3 * 10**9,
    "bytes_sent": 10**12 + 5,
    "bytes_retrans": 4096,
}


def test_the_layout_is_the_kernel_headers():
    assert LAYOUT.size == 232
    assert struct.calcsize("=" + "B" * len(U8) + "I" * len(U32)) == 104  # tcpi_pacing_rate's offset


def test_a_known_struct_decodes_to_its_fields():
    info = tcpinfo.parse(tcp_info_bytes(**KNOWN))
    assert info == tcpinfo.TcpInfo(
        retransmits=3,
        total_retrans=99,
        lost=7,
        retrans=2,
        snd_cwnd=10,
        snd_ssthresh=2147483647,
        snd_mss=1448,
        rtt_us=1234,
        rttvar_us=56,
        min_rtt_us=8,
        pacing_rate_bytes_per_s=5 * 10**9,
        delivery_rate_bytes_per_s=3 * 10**9,
        delivery_rate_app_limited=True,
        bytes_sent=10**12 + 5,
        bytes_acked=10**12,
        bytes_received=77,
        bytes_retrans=4096,
    )


def test_an_older_kernels_shorter_struct_leaves_its_missing_fields_none():
    data = tcp_info_bytes(**KNOWN)
    # Linux 3.x ended at tcpi_total_retrans (104 bytes): no rates, no byte counts.
    old = tcpinfo.parse(data[:104])
    assert (old.total_retrans, old.snd_cwnd, old.rtt_us, old.retransmits) == (99, 10, 1234, 3)
    assert old.pacing_rate_bytes_per_s is None and old.delivery_rate_bytes_per_s is None
    assert old.delivery_rate_app_limited is None and old.bytes_retrans is None and old.min_rtt_us is None
    # 4.9's ended after tcpi_delivery_rate (168): the rates are there, bytes_retrans not yet.
    mid = tcpinfo.parse(data[:168])
    assert mid.delivery_rate_bytes_per_s == 3 * 10**9 and mid.delivery_rate_app_limited is True
    assert mid.bytes_sent is None and mid.bytes_retrans is None
    # A field cut in the middle is not read half.
    assert tcpinfo.parse(data[:102]).total_retrans is None
    assert tcpinfo.parse(b"") == tcpinfo.TcpInfo()


def test_an_all_ones_rate_is_none_not_a_number_beyond_json():
    info = tcpinfo.parse(tcp_info_bytes(pacing_rate=2**64 - 1, delivery_rate=0))
    assert info.pacing_rate_bytes_per_s is None and info.delivery_rate_bytes_per_s == 0
    assert info.delivery_rate_app_limited is False


def test_a_real_connection_decodes_to_plausible_figures():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            client.sendall(b"x" * 100_000)
            got = 0
            while got < 100_000:
                got += len(server.recv(65536))
            data = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, tcpinfo.SIZE)
            info = tcpinfo.parse(data)
            received = tcpinfo.parse(server.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, tcpinfo.SIZE))
    assert len(data) >= 216  # this machine's kernel has every field the parser knows
    assert None not in info.to_json().values()
    assert info.snd_cwnd > 0 and info.snd_mss > 0 and info.rtt_us > 0
    assert info.bytes_acked == 100_000 + 1 == info.bytes_sent + 1  # the SYN counts as one acked byte
    assert received.bytes_received == 100_000


def _sample(t_s: float, total_retrans: list[int | None]) -> Sample:
    """A sample whose endpoints' TCP_INFO say ``total_retrans`` (None: not read), in endpoint order."""
    infos = [None if n is None else tcp_info_bytes(total_retrans=n, snd_cwnd=10, rtt=50) for n in total_retrans]
    return Sample(t_s, [[0.0] * len(cpu.FIELDS)], [0] * len(SLOTS) * len(total_retrans), tcp_info=infos)


@pytest.mark.parametrize(
    "test, expected",
    [
        # Endpoint order is flow0.client, flow0.server, flow1.client, flow1.server; deltas 2, 30, 5, 400.
        (TestName.TCP_STREAM, 2 + 5),  # the clients send
        (TestName.TCP_SENDFILE, 2 + 5),
        (TestName.TCP_MAERTS, 30 + 400),  # the servers send
        (TestName.TCP_RR, 2 + 30 + 5 + 400),  # both ends send
    ],
)
def test_the_windows_retransmits_are_the_senders_total_retrans_growth(test, expected):
    first, last = _sample(0.0, [1, 0, 10, 0]), _sample(1.0, [3, 30, 15, 400])
    assert TRAITS[test].tcp_info
    assert tcpinfo.retransmits(TRAITS[test], 2, first.tcp_info, last.tcp_info) == expected


@pytest.mark.parametrize("test, expected", [(TestName.TCP_STREAM, 2 + 400), (TestName.TCP_MAERTS, 30 + 5)])
def test_with_bidir_each_flow_counts_its_own_senders_retransmits(test, expected):
    # Flow 0 runs the test, flow 1 its reverse: flow 1's sender is the other end.
    first, last = _sample(0.0, [1, 0, 10, 0]), _sample(1.0, [3, 30, 15, 400])
    assert tcpinfo.retransmits(TRAITS[test], 2, first.tcp_info, last.tcp_info, bidir=True) == expected


def test_no_retransmits_where_a_sender_was_not_read_or_the_test_reads_none():
    # The server half on another host: its ends are not read, so MAERTS (server sends) has no figure...
    first, last = _sample(0.0, [1, None]), _sample(1.0, [4, None])
    assert tcpinfo.retransmits(TRAITS[TestName.TCP_MAERTS], 1, first.tcp_info, last.tcp_info) is None
    assert tcpinfo.retransmits(TRAITS[TestName.TCP_RR], 1, first.tcp_info, last.tcp_info) is None
    # ...while STREAM's sender is the client here.
    assert tcpinfo.retransmits(TRAITS[TestName.TCP_STREAM], 1, first.tcp_info, last.tcp_info) == 3
    for test in (TestName.TCP_CRR, TestName.UDP_STREAM, TestName.UDP_RR):
        assert not TRAITS[test].tcp_info
        assert tcpinfo.retransmits(TRAITS[test], 1, first.tcp_info, last.tcp_info) is None
    assert tcpinfo.retransmits(TRAITS[TestName.TCP_STREAM], 1, None, None) is None


def test_readings_are_stored_per_flow_and_role_with_their_edges():
    samples = [_sample(0.0, [1, 0, 10, None]), _sample(0.5, [2, 0, 12, None]), _sample(1.0, [3, 0, 15, None])]
    doc = tcpinfo.to_json(samples, 2)
    assert doc is not None and len(doc) == 2
    assert [r["edge"] for r in doc[0]["client"]] == ["start", None, "end"]
    assert [r["t_s"] for r in doc[0]["client"]] == [0.0, 0.5, 1.0]
    assert [r["total_retrans"] for r in doc[1]["client"]] == [10, 12, 15]
    assert doc[1]["server"] is None  # not read: null, not an empty list
    assert doc[0]["server"][0]["rtt_us"] == 50
    assert tcpinfo.to_json([Sample(0.0, [], []), Sample(1.0, [], [])], 1) is None


def _run(test: TestName, retrans: tuple[int, int]) -> tuple[RunResult, RawRun]:
    names = counter_names(1)
    first = Sample(0.0, [[0.0] * len(cpu.FIELDS)], [0] * len(names), tcp_info=[tcp_info_bytes(), tcp_info_bytes()])
    counters = [0] * len(names)
    counters[slot_index(0, "server", BYTES_RECEIVED)] = 10 * 1024 * 1024
    last = Sample(
        4.0,
        [[1.0, 0.0, 0.5, 2.5, 0.0, 0.0, 0.2, 0.0]],
        counters,
        tcp_info=[tcp_info_bytes(total_retrans=retrans[0]), tcp_info_bytes(total_retrans=retrans[1])],
    )
    ready = Ready(1, None, (0,), SocketFacts(0, 0), data_fd=5)
    ends = [EndpointReport(0, role, ready, Finished({0: 2}, (0,) * len(SLOTS))) for role in ("client", "server")]
    raw = RawRun(samples=[first, last], endpoints=ends, histograms=[], sampler_cpu_s=0.001)
    cfg = TestConfig(test=test, duration_s=4.0)
    it = bench.iteration(cfg, raw)
    run = RunResult("veth", "topologies/veth.toml", cfg, RunStatus.OK, metrics=it.metrics, iterations=(it,))
    return run, raw


def test_a_run_stores_its_readings_and_retransmits_and_the_file_loads(tmp_path):
    run, raw = _run(TestName.TCP_STREAM, (6, 1))
    assert derive(TestName.TCP_STREAM, 1, raw).retransmits == 6
    path = tmp_path / "r.json"
    ResultFile(path=path, command=["vdevperf", "run"]).add(run)
    document = load(path)  # vdevperf's own schema check
    jsonschema.validate(document, SCHEMA)
    stored = document["runs"][0]
    assert stored["metrics"]["retransmits"] == 6
    assert stored["iterations"][0]["raw"]["tcp_info"][0]["client"][-1]["total_retrans"] == 6
    assert "fd" not in json.dumps(stored["iterations"][0]["endpoints"])  # the descriptor number stays here
    assert run_from_json(stored).metrics == run.metrics


def test_runs_without_tcp_info_keep_their_keys_as_they_were(tmp_path):
    plain = Sample(0.0, [[0.0] * len(cpu.FIELDS)], [0] * len(counter_names(1)))
    raw = RawRun(samples=[plain, Sample(1.0, plain.cpu, plain.counters)], endpoints=[], histograms=[])
    cfg = TestConfig(test=TestName.TCP_CRR, duration_s=1.0)
    it = bench.iteration(cfg, raw)
    assert it.metrics.retransmits is None and "tcp_info" not in it.raw
    path = tmp_path / "r.json"
    ResultFile(path=path, command=["vdevperf", "run"]).add(
        RunResult("veth", "t", cfg, RunStatus.OK, metrics=it.metrics, iterations=(it,))
    )
    assert "retransmits" not in load(path)["runs"][0]["metrics"]


def test_iterations_average_their_retransmits():
    a, _ = _run(TestName.TCP_STREAM, (2, 0))
    b, _ = _run(TestName.TCP_STREAM, (5, 0))
    assert summarize(TestName.TCP_STREAM, [a.metrics, b.metrics], []).retransmits == 3.5


def test_the_table_shows_retr_only_for_runs_that_read_it():
    with_retr, _ = _run(TestName.TCP_STREAM, (6, 0))
    table = run_table([with_retr])
    header, _, line = table.splitlines()[:3]
    assert header.split()[-1] == "Retr" and line.split()[-1] == "6"
    assert with_retr.metrics is not None
    without = dataclasses.replace(with_retr, metrics=dataclasses.replace(with_retr.metrics, retransmits=None))
    assert "Retr" not in run_table([without])
    assert "Retr" in run_table([without, with_retr])


def test_a_live_interval_line_carries_its_retransmits():
    cfg = TestConfig(test=TestName.TCP_RR, duration_s=1.0)
    samples = [_sample(0.0, [1, 2]), _sample(0.5, [1, 2]), _sample(1.0, [4, 3])]
    assert bench.interval_record("veth", cfg, samples[:2])["retransmits"] == 0
    assert bench.interval_record("veth", cfg, samples)["retransmits"] == 3 + 1
    assert "retransmits" not in bench.interval_record("veth", TestConfig(test=TestName.UDP_RR), samples[:2])


def _child_holding(sock: socket.socket) -> tuple[int, int, int]:
    """Fork a process that keeps ``sock`` until told to close it; its pid, the fd, and the pipe to tell it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            os.read(r, 1)
            sock.close()
            os.read(r, 1)
        finally:
            os._exit(0)
    os.close(r)
    return pid, sock.fileno(), w


def test_a_borrowed_socket_reads_tcp_info_and_given_back_lets_the_peer_see_eof():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        held, _ = listener.accept()
        peer.sendall(b"y" * 1000)
        got = 0
        while got < 1000:  # read here: a socket closed with unread data sends RST, not FIN
            got += len(held.recv(1000))
        pid, fd, tell = _child_holding(held)
        held.close()  # only the child has it now
        try:
            with Borrowed([(pid, fd), None, (os.getpid(), 10**6)]) as borrowed:
                assert borrowed.borrowed == 1  # a descriptor that does not exist is simply not read
                first, none, missing = borrowed.read()
                assert none is None and missing is None and first is not None
                assert tcpinfo.parse(first).bytes_received == 1000
                os.write(tell, b"c")  # the child closes its socket; the borrowed copy holds it open
                peer.settimeout(0.3)
                with pytest.raises(TimeoutError):
                    peer.recv(1)
            assert borrowed.read() == [None, None, None]
            peer.settimeout(5)
            assert peer.recv(1) == b""  # given back: the FIN went out
        finally:
            os.write(tell, b"x")
            os.close(tell)
            os.waitpid(pid, 0)
            peer.close()


def test_a_remote_endpoints_ready_never_names_a_descriptor_to_borrow():
    # A vdevperf server's started message carries no descriptor; one that did must not make this host
    # borrow descriptor 3 of whichever local process has that pid.
    doc = {"pid": os.getpid(), "placement": {"requested_cpu": None, "affinity": [0]}, "socket": TCP_FACTS, "fd": 3}
    assert Ready.from_json(doc).data_fd is None
    local = Ready.from_message(os.getpid(), doc)
    assert local.data_fd == 3 and "fd" not in json.dumps(local.to_json())
