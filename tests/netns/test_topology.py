"""Build every bundled topology for real, pass TCP both ways, and tear down without a trace."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from vdevperf.errors import Interrupted, PrivilegeError, TopologyError, UnsupportedKind
from vdevperf.topology import ledger as ledger_mod
from vdevperf.topology import naming, netns
from vdevperf.topology.builder import Site, build
from vdevperf.topology.cleanup import cleanup
from vdevperf.topology.spec import bundled_topologies, load_topology, parse_topology

PAYLOAD = os.urandom(256 * 1024)


def fresh_run_id() -> str:
    return naming.new_run_id(ledger_mod.run_ids_in_use())


def traces_of(run_id: str) -> list[str]:
    """Everything of run ``run_id`` still present: namespaces and its ledger."""
    found = [n for n in netns.list_ours() if n.startswith(f"{naming.PREFIX}-{run_id}-")]
    if ledger_mod.ledger_path(run_id).exists():
        found.append(str(ledger_mod.ledger_path(run_id)))
    return found


def recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(65536, size - got))
        assert chunk, "connection closed early"
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def exchange(a: socket.socket, b: socket.socket) -> None:
    """PAYLOAD from a to b and from b to a, each written by a thread while the other side reads."""
    for src, dst in ((a, b), (b, a)):
        writer = threading.Thread(target=src.sendall, args=(PAYLOAD,))
        writer.start()
        assert recv_exact(dst, len(PAYLOAD)) == PAYLOAD
        writer.join(5)


def connect_and_exchange(topo, listen_site: Site, connect_site: Site, version: int) -> None:
    """Listen in one site's namespace, connect from the other's, move data both ways."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    with netns.entered(topo.netns_fd(listen_site.netns)):
        listener = socket.socket(family, socket.SOCK_STREAM)
    with netns.entered(topo.netns_fd(connect_site.netns)):
        conn = socket.socket(family, socket.SOCK_STREAM)
    with listener, conn:
        listener.settimeout(5)
        conn.settimeout(5)
        listener.bind((listen_site.address(version), 0))
        listener.listen(1)
        conn.bind((connect_site.address(version), 0))
        conn.connect((listen_site.address(version), listener.getsockname()[1]))
        accepted, peer = listener.accept()
        with accepted:
            accepted.settimeout(5)
            assert peer[0] == connect_site.address(version)
            exchange(conn, accepted)


@pytest.mark.parametrize("name", bundled_topologies())
def test_bundled_topology_passes_traffic_both_ways(name):
    spec = load_topology(name)
    run_id = fresh_run_id()
    try:
        topo = build(spec, run_id=run_id)
    except UnsupportedKind as exc:
        assert traces_of(run_id) == [], "an unsupported kind must leave nothing behind"
        pytest.skip(str(exc))
    with topo:
        assert topo.run_id == run_id
        record = topo.ledger.record
        assert record.owner.pid == os.getpid()
        assert set(record.namespaces) == {naming.netns_name(run_id, s) for s in spec.namespaces}
        for short in spec.namespaces:
            assert os.path.samefile(topo.netns_path(short), f"/proc/self/fd/{topo.netns_fd(short)}")
        for dev in spec.devices:
            assert topo.ipr(dev.netns).link_lookup(ifname=topo.ifname(dev.name)), dev.name
        for version in (4, 6):
            if topo.client.address(version) and topo.server.address(version):
                connect_and_exchange(topo, topo.server, topo.client, version)
                connect_and_exchange(topo, topo.client, topo.server, version)
    assert traces_of(run_id) == []


def test_nothing_reaches_the_root_namespace():
    before = {link.get("ifname") for link in _root_links()}
    with build(load_topology("macvlan")) as topo:
        during = {link.get("ifname") for link in _root_links()}
        assert during == before, "a topology must not create root-namespace links"
        assert topo.ifname("m0").startswith(naming.PREFIX + topo.run_id)


def _root_links():
    from pyroute2 import IPRoute

    with IPRoute(groups=0) as ipr:
        return ipr.get_links()


def test_mtu_mode_and_master_are_applied():
    spec = parse_topology(
        b'namespaces = ["a", "br", "b"]\n'
        b'[[device]]\nname = "br0"\nkind = "bridge"\nnetns = "br"\nmtu = 9000\n'
        b'[[device]]\nname = "a0"\nkind = "veth"\nnetns = "a"\npeer = "x0"\nmtu = 9000\n'
        b'addresses = ["198.18.9.1/24"]\n'
        b'[[device]]\nname = "x0"\nkind = "veth"\nnetns = "br"\npeer = "a0"\nmtu = 9000\nmaster = "br0"\n'
        b'[[device]]\nname = "m0"\nkind = "macvlan"\nmode = "private"\nparent = "br0"\nnetns = "b"\n'
        b'addresses = ["198.18.9.2/24"]\n'
        b'[client]\nnetns = "a"\nipv4 = "198.18.9.1"\n[server]\nnetns = "b"\nipv4 = "198.18.9.2"\n',
        "inline.toml", "inline")
    with build(spec) as topo:
        a0 = topo.ipr("a").get_links(ifname=topo.ifname("a0"))[0]
        x0 = topo.ipr("br").get_links(ifname=topo.ifname("x0"))[0]
        br0 = topo.ipr("br").get_links(ifname=topo.ifname("br0"))[0]
        m0 = topo.ipr("b").get_links(ifname=topo.ifname("m0"))[0]
        assert a0.get("mtu") == x0.get("mtu") == 9000
        assert x0.get("master") == br0["index"]
        assert m0.get(("linkinfo", "data", "macvlan_mode")) == "private"
        connect_and_exchange(topo, topo.server, topo.client, 4)


def test_exception_inside_with_tears_down():
    with pytest.raises(RuntimeError, match="boom"):
        with build(load_topology("veth")) as topo:
            run_id = topo.run_id
            assert traces_of(run_id)
            raise RuntimeError("boom")
    assert traces_of(run_id) == []


def test_signal_inside_with_tears_down():
    def interrupt(signum, frame):
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        with pytest.raises(Interrupted):
            with build(load_topology("bridge")) as topo:
                run_id = topo.run_id
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises before or during this, inside the block
    finally:
        signal.signal(signal.SIGTERM, old)
    assert traces_of(run_id) == []
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set(), "teardown must restore the signal mask"


def test_failed_readiness_tears_down():
    # Different subnets, no route: every connection attempt fails until the deadline.
    spec = parse_topology(
        b'namespaces = ["a", "b"]\n'
        b'[[device]]\nname = "a0"\nkind = "veth"\nnetns = "a"\npeer = "b0"\naddresses = ["198.18.7.1/24"]\n'
        b'[[device]]\nname = "b0"\nkind = "veth"\nnetns = "b"\npeer = "a0"\naddresses = ["198.18.8.1/24"]\n'
        b'[client]\nnetns = "a"\nipv4 = "198.18.7.1"\n[server]\nnetns = "b"\nipv4 = "198.18.8.1"\n',
        "unrouted.toml", "unrouted")
    run_id = fresh_run_id()
    with pytest.raises(TopologyError, match=r"topology unrouted: not ready after 5 s: TCP from \[client\]"):
        build(spec, run_id=run_id)
    assert traces_of(run_id) == []


def test_run_id_in_use_is_refused():
    with build(load_topology("loopback")) as topo:
        with pytest.raises(TopologyError, match=f"run id '{topo.run_id}' is in use"):
            build(load_topology("loopback"), run_id=topo.run_id)
        assert traces_of(topo.run_id)


def test_without_privileges():
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setuid(65534)
            build(load_topology("veth"))
        except PrivilegeError as exc:
            code = 0 if "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)" in str(exc) else 2
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _dead_pid() -> tuple[int, float]:
    """A pid (and its recorded start time) of a child that has exited and been reaped."""
    child = subprocess.Popen(["sleep", "30"])
    start = ledger_mod.process_start_time(child.pid)
    child.kill()
    child.wait()
    return child.pid, start


def _fake_ledger(run_id: str, owner: ledger_mod.PidRecord, pids=(), namespaces=()) -> None:
    record = ledger_mod.LedgerRecord(run_id=run_id, owner=owner, topology="fake",
                                     namespaces=tuple(namespaces), pids=tuple(pids))
    ledger_mod.ledger_path(run_id).write_text(json.dumps(record.to_json()))


def test_cleanup_removes_dead_runs_only():
    dead_rid, reused_rid = fresh_run_id(), None
    dead_pid, dead_start = _dead_pid()
    endpoint = subprocess.Popen(["sleep", "60"])
    stranger = subprocess.Popen(["sleep", "60"])
    dead_names = [naming.netns_name(dead_rid, s) for s in ("cli", "srv")]
    live = ledger_mod.Ledger.create(topology="live")
    live_name = naming.netns_name(live.run_id, "cli")
    try:
        for name in dead_names:
            netns.create(name)
        _fake_ledger(
            dead_rid, ledger_mod.PidRecord(dead_pid, dead_start),
            pids=[ledger_mod.PidRecord(endpoint.pid, ledger_mod.process_start_time(endpoint.pid)),
                  # Same pid, other start time: a process that reused the pid; must survive.
                  ledger_mod.PidRecord(stranger.pid, ledger_mod.process_start_time(stranger.pid) - 100)],
            namespaces=dead_names + [naming.netns_name(dead_rid, "gone")])
        # An owner pid that is alive but started at another time is a reused pid: the run is dead.
        reused_rid = naming.new_run_id(ledger_mod.run_ids_in_use())
        _fake_ledger(reused_rid, ledger_mod.PidRecord(os.getpid(), 1.0))
        live.add_namespace(live_name)
        netns.create(live_name)

        report = cleanup()

        assert dead_rid in report.runs and reused_rid in report.runs
        assert set(dead_names) <= set(report.namespaces)
        assert endpoint.pid in report.killed_pids and stranger.pid not in report.killed_pids
        assert endpoint.wait(5) == -signal.SIGKILL
        assert stranger.poll() is None
        assert traces_of(dead_rid) == [] and traces_of(reused_rid) == []
        assert live.run_id in report.live_runs
        assert netns.exists(live_name) and live.path.exists()
        assert "removed" in report.summary()
    finally:
        for proc in (endpoint, stranger):
            proc.kill()
            proc.wait()
        for name in dead_names + [live_name]:
            netns.remove(name)
        live.remove()
        for rid in (dead_rid, reused_rid):
            if rid:
                ledger_mod.ledger_path(rid).unlink(missing_ok=True)
    assert traces_of(live.run_id) == []
