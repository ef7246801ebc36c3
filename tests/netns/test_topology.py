"""Build every bundled topology for real, pass TCP both ways, and tear down without a trace."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from vdevperf.errors import Interrupted, PrivilegeError, TopologyError, UnsupportedKind, VdevperfError
from vdevperf.topology import ledger as ledger_mod
from vdevperf.topology import naming, netns
from vdevperf.topology.builder import Site, build
from vdevperf.topology.cleanup import cleanup
from vdevperf.topology.ledger import Identity
from vdevperf.topology.probe import probe_kinds
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
        # A site a NAT publishes is reached at its published address, and what it sends out is
        # masqueraded behind that same address (Docker's shape); any other site is its own address.
        conn.connect((listen_site.target(version), listener.getsockname()[1]))
        accepted, peer = listener.accept()
        with accepted:
            accepted.settimeout(5)
            assert peer[0] == connect_site.target(version)
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
        "inline.toml",
        "inline",
    )
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


def test_a_socket_close_that_raises_still_removes_every_namespace_and_the_ledger():
    topo = build(load_topology("veth"))
    run_id, path = topo.run_id, topo.ledger.path
    ipr = topo.ipr(topo.client.netns)
    real_close = ipr.close

    def failing_close(*args, **kwargs) -> None:
        real_close(*args, **kwargs)
        raise OSError(errno.EIO, "injected close failure")

    ipr.close = failing_close
    with pytest.raises(TopologyError, match="teardown incomplete: .*injected close failure"):
        topo.close()
    assert traces_of(run_id) == []
    assert not path.exists()


def test_failed_readiness_tears_down():
    # Different subnets, no route: every connection attempt fails until the deadline.
    spec = parse_topology(
        b'namespaces = ["a", "b"]\n'
        b'[[device]]\nname = "a0"\nkind = "veth"\nnetns = "a"\npeer = "b0"\naddresses = ["198.18.7.1/24"]\n'
        b'[[device]]\nname = "b0"\nkind = "veth"\nnetns = "b"\npeer = "a0"\naddresses = ["198.18.8.1/24"]\n'
        b'[client]\nnetns = "a"\nipv4 = "198.18.7.1"\n[server]\nnetns = "b"\nipv4 = "198.18.8.1"\n',
        "unrouted.toml",
        "unrouted",
    )
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


def _fake_ledger(run_id: str, owner: ledger_mod.PidRecord, pids=(), namespaces=(), created=()) -> None:
    """A ledger as a run would leave it; ``created`` maps names to the identity its journal records."""
    record = ledger_mod.LedgerRecord(
        run_id=run_id, owner=owner, topology="fake", namespaces=tuple(namespaces), pids=tuple(pids)
    )
    path = ledger_mod.ledger_path(run_id)
    path.write_text(json.dumps(record.to_json()))
    with ledger_mod.journal_path(path).open("a") as journal:
        for name, ident in dict(created).items():
            journal.write(json.dumps({"name": name, "dev": ident.dev, "ino": ident.ino}) + "\n")


def _in_netns(name: str, *argv: str) -> subprocess.Popen:
    """A process started inside namespace ``name``, as an endpoint is."""
    return subprocess.Popen(list(argv), preexec_fn=lambda: netns.move_to(netns.path(name)))


def _record(proc: subprocess.Popen) -> ledger_mod.PidRecord:
    return ledger_mod.PidRecord(proc.pid, ledger_mod.process_start_time(proc.pid))


def test_cleanup_removes_dead_runs_only():
    dead_rid, reused_rid = fresh_run_id(), None
    dead_pid, dead_start = _dead_pid()
    dead_names = [naming.netns_name(dead_rid, s) for s in ("cli", "srv")]
    # Ledgered, but never journalled as created (someone else's, or the run died in between).
    unproven = naming.netns_name(dead_rid, "other")
    # Journalled, but the namespace under that name is not the one the run created.
    swapped = naming.netns_name(dead_rid, "swap")
    live = ledger_mod.Ledger.create(topology="live")
    live_name = naming.netns_name(live.run_id, "cli")
    procs = []
    try:
        for name in [*dead_names, unproven, swapped]:
            netns.create(name)
        endpoint = _in_netns(dead_names[0], "sleep", "60")
        # Same pid, other start time: a process that reused the pid; must survive.
        stranger = _in_netns(dead_names[1], "sleep", "60")
        # The recorded process itself, but living outside the run's namespaces: not proven an endpoint.
        outsider = subprocess.Popen(["sleep", "60"])
        procs = [endpoint, stranger, outsider]
        swapped_now = Identity.of(netns.path(swapped))
        created = {name: Identity.of(netns.path(name)) for name in dead_names}
        created[swapped] = Identity(swapped_now.dev, swapped_now.ino + 1)
        _fake_ledger(
            dead_rid,
            ledger_mod.PidRecord(dead_pid, dead_start),
            pids=[
                _record(endpoint),
                ledger_mod.PidRecord(stranger.pid, _record(stranger).start_time - 100),
                _record(outsider),
            ],
            namespaces=dead_names + [unproven, swapped, naming.netns_name(dead_rid, "gone")],
            created=created,
        )
        # An owner pid that is alive but started at another time is a reused pid: the run is dead.
        reused_rid = naming.new_run_id(ledger_mod.run_ids_in_use())
        _fake_ledger(reused_rid, ledger_mod.PidRecord(os.getpid(), 1.0))
        ledger_mod.create_namespace(live, live_name)

        report = cleanup()

        assert reused_rid in report.runs and traces_of(reused_rid) == []
        assert set(dead_names) <= set(report.namespaces)
        assert endpoint.pid in report.killed_pids and endpoint.wait(5) == -signal.SIGKILL
        # What is not proven the dead run's own is left alone, and its ledger with it.
        assert stranger.poll() is None and outsider.poll() is None
        assert stranger.pid not in report.killed_pids + report.spared_pids
        assert outsider.pid in report.spared_pids and outsider.pid not in report.killed_pids
        assert unproven not in report.namespaces and swapped not in report.namespaces
        assert {unproven, swapped} <= set(report.unproven_namespaces)
        assert dead_rid in report.kept_runs and dead_rid not in report.runs
        dead_ledger = ledger_mod.ledger_path(dead_rid)
        assert traces_of(dead_rid) == [unproven, swapped, str(dead_ledger)]
        summary = report.summary()
        assert "removed" in summary and f"not proven the dead runs' own: {unproven}, {swapped}, " in summary
        assert f"pid {outsider.pid}" in summary and f"the ledgers of {dead_rid}" in summary
        assert f"pid {outsider.pid}" in report.line() and dead_rid in report.line()
        assert live.run_id in report.live_runs
        assert netns.exists(live_name) and live.path.exists()

        # Once those are gone (whoever they belonged to), the ledger goes too.
        outsider.kill()
        outsider.wait()
        netns.remove(unproven)
        netns.remove(swapped)
        again = cleanup()
        assert dead_rid in again.runs and traces_of(dead_rid) == []
        assert not ledger_mod.journal_path(dead_ledger).exists()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for name in dead_names + [unproven, swapped, live_name]:
            netns.remove(name)
        live.remove()
        for rid in (dead_rid, reused_rid):
            if rid:
                ledger_mod.remove_files(ledger_mod.ledger_path(rid))
    assert traces_of(live.run_id) == []


def test_each_namespace_is_journalled_with_its_identity_right_after_creation():
    with build(load_topology("bridge")) as topo:
        on_disk = ledger_mod.read_ledger(topo.ledger.path)
        assert set(on_disk.created) == set(on_disk.namespaces) == {topo.netns_name(s) for s in topo.spec.namespaces}
        for short in topo.spec.namespaces:
            fd_stat = os.fstat(topo.netns_fd(short))
            assert on_disk.identity(topo.netns_name(short)) == Identity(fd_stat.st_dev, fd_stat.st_ino)
        assert topo.ledger.record.created == on_disk.created
        journal = ledger_mod.journal_path(topo.ledger.path)
        assert journal.exists()
    assert not journal.exists() and not topo.ledger.path.exists()


def test_the_identity_is_journalled_before_the_namespace_appears_under_its_name(monkeypatch):
    owner = ledger_mod.Ledger.create(topology="order")
    name = naming.netns_name(owner.run_id, "x")
    create = netns.create
    seen = []

    def watching(name, *args, before_mount=None, **kwargs):
        def hook(st):
            seen.append(netns.unmounted(name))  # still a bare mount point: no namespace under the name yet
            before_mount(st)
            seen.append(ledger_mod.read_ledger(owner.path).identity(name))  # on disk already

        return create(name, *args, before_mount=hook, **kwargs)

    monkeypatch.setattr(netns, "create", watching)
    try:
        identity = ledger_mod.create_namespace(owner, name)
        assert seen == [True, identity] and Identity.of(netns.path(name)) == identity
    finally:
        netns.remove(name)
        owner.remove()


def test_cleanup_removes_the_bare_mount_point_of_a_run_killed_before_it_mounted():
    dead_pid, dead_start = _dead_pid()
    run_id = fresh_run_id()
    bare = naming.netns_name(run_id, "cli")
    _fake_ledger(run_id, ledger_mod.PidRecord(dead_pid, dead_start), namespaces=[bare])
    try:
        os.close(os.open(netns.path(bare), os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))  # as netns.create makes it
        assert netns.unmounted(bare)
        report = cleanup()
        assert bare in report.namespaces and run_id in report.runs and traces_of(run_id) == []
    finally:
        netns.remove(bare)
        ledger_mod.remove_files(ledger_mod.ledger_path(run_id))


def test_a_name_that_exists_already_leaves_the_ledger_and_is_never_removed():
    owner = ledger_mod.Ledger.create(topology="eexist")
    name = naming.netns_name(owner.run_id, "x")
    netns.create(name)  # someone else's, made under a name this run ledgers
    theirs = Identity.of(netns.path(name))
    try:
        with pytest.raises(FileExistsError):
            ledger_mod.create_namespace(owner, name)
        assert name not in owner.record.namespaces and owner.identity(name) is None
        on_disk = ledger_mod.read_ledger(owner.path)
        assert name not in on_disk.namespaces and name not in on_disk.created
        # Even a ledger that (as before) still named it could not have it removed: it was never journalled.
        owner.add_namespace(name)
        assert ledger_mod.read_ledger(owner.path).identity(name) is None
    finally:
        owner.remove()
        assert Identity.of(netns.path(name)) == theirs
        netns.remove(name)


def test_a_build_that_meets_someone_elses_namespace_leaves_it_alone(monkeypatch):
    run_id = fresh_run_id()
    theirs = naming.netns_name(run_id, "srv")
    create = netns.create

    def racing(name, *args, **kwargs):
        if name == theirs:
            create(name)  # another process takes the name first
        return create(name, *args, **kwargs)

    monkeypatch.setattr(netns, "create", racing)
    try:
        with pytest.raises(TopologyError, match=f"namespace '{theirs}': File exists"):
            build(load_topology("veth"), run_id=run_id)
        assert traces_of(run_id) == [theirs]  # ours went, with the ledger; theirs stayed
    finally:
        netns.remove(theirs)


def test_doctor_probe_never_removes_a_namespace_it_did_not_create(monkeypatch):
    create = netns.create
    seen = []

    def racing(name, *args, **kwargs):
        create(name)  # another process takes the name first
        seen.append(name)
        return create(name, *args, **kwargs)

    monkeypatch.setattr(netns, "create", racing)
    try:
        with pytest.raises(VdevperfError, match="exists already .not created by this probe.; left alone"):
            probe_kinds()
        assert netns.exists(seen[0])
        assert not ledger_mod.ledger_path(naming.parse_netns_name(seen[0])[0]).exists()
    finally:
        for name in seen:
            netns.remove(name)
