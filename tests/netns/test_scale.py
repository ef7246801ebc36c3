"""vdevperf scale with real namespaces: exact counts, links, phases, signals, kill -9 and cleanup.

N stays small (at most 64, marks of 16) so the suite stays fast; every test
ends with conftest's leak check, and each also checks that no name of its
run is left under /run/netns.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from vdevperf.errors import VdevperfError
from vdevperf.scale import document, runner, table
from vdevperf.scale.model import Links, Method, Phase, ScaleConfig
from vdevperf.scale.session import BRIDGE_INDEX, Session
from vdevperf.topology import ledger as ledger_mod
from vdevperf.topology import netns
from vdevperf.topology.cleanup import cleanup

REPO = Path(__file__).resolve().parents[2]


def names_of(run_id: str) -> list[str]:
    """Our entries under /run/netns that carry ``run_id``."""
    return [n for n in netns.list_ours() if n.startswith(f"vdp-{run_id}-")]


def namespaces_of(run_id: str) -> list[str]:
    """The numbered namespaces (n0001...) of run ``run_id`` present now."""
    return [n for n in names_of(run_id) if n.startswith(f"vdp-{run_id}-n")]


def links_in(name: str) -> dict[str, dict]:
    """Links of namespace ``name``: ifname -> {up, master, addresses}."""
    fd = netns.open_fd(name)
    try:
        with netns.entered(fd):
            ipr = IPRoute(groups=0)
        with ipr:
            found = {}
            for msg in ipr.get_links():
                found[msg.get_attr("IFLA_IFNAME")] = {
                    "index": msg["index"],
                    "up": bool(msg["flags"] & 1),
                    "master": msg.get_attr("IFLA_MASTER"),
                    "addresses": [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=msg["index"], family=2)],
                }
            return found
    finally:
        os.close(fd)


@pytest.mark.parametrize("method", list(Method))
def test_each_method_creates_exactly_n_with_links_and_leaves_nothing(method):
    config = ScaleConfig(
        count=24,
        mark=8,
        methods=(method,),
        links=Links.VETH,
        up=True,
        addresses=True,
        bridge=True,
        phases=(Phase.CREATE,),
        settle_timeout_s=5,
    )
    with Session(config) as session:
        session.open()
        run_id, layout = session.run_id, session.layout
        total_s, marks = runner.create_with_marks(session, method, Links.VETH)
        assert sorted(namespaces_of(run_id)) == [layout.ns(i) for i in range(1, 25)]
        assert [m.count for m in marks] == [8, 16, 24] and total_s == marks[-1].elapsed_s
        for i in (1, 13, 24):
            inside = links_in(layout.ns(i))
            assert inside["lo"]["up"]
            end = inside[layout.ns_end]
            assert end["up"] and end["addresses"] == [str(layout.address(i).ip)]
        hub = links_in(layout.hub)
        prefix = layout.hub_end(1)[:-4]
        ends = {name: link for name, link in hub.items() if name.startswith(prefix)}
        assert sorted(ends) == [layout.hub_end(i) for i in range(1, 25)]
        assert all(link["up"] and link["master"] == BRIDGE_INDEX for link in ends.values())
        assert hub[layout.bridge]["index"] == BRIDGE_INDEX and hub[layout.bridge]["up"]
        removed, _ = session.destroy(layout.ns(i) for i in range(1, 25))
        assert removed == 24 and namespaces_of(run_id) == []
        # The hub ends die with their peers, once the kernel has cleaned the namespaces up (asynchronously).
        deadline = time.monotonic() + 20
        while sorted(n for n in links_in(layout.hub) if n != "lo") != [layout.bridge]:
            assert time.monotonic() < deadline, "hub ends outlived their namespaces"
            time.sleep(0.05)
    assert names_of(run_id) == [] and not ledger_mod.ledger_path(run_id).exists()


def test_a_scale_run_starts_by_sweeping_what_a_dead_run_left():
    dead = subprocess.Popen(["sleep", "30"])
    owner = ledger_mod.PidRecord(dead.pid, ledger_mod.process_start_time(dead.pid))
    dead.kill()
    dead.wait()
    left = ledger_mod.Ledger.create(topology="dead")  # as the dead run wrote it, then owned by it
    name = f"vdp-{left.run_id}-cli"
    try:
        ledger_mod.create_namespace(left, name)
        path = left.path
        record = ledger_mod.LedgerRecord(run_id=left.run_id, owner=owner, topology="dead", namespaces=(name,))
        path.write_text(json.dumps(record.to_json()))
        notices = []
        config = ScaleConfig(count=4, mark=4, methods=(Method.NETLINK,), phases=(Phase.CREATE,), settle_timeout_s=5)
        result = runner.run_scale(config, notice=notices.append)
        assert len(notices) == 1 and notices[0].startswith("removed what ") and left.run_id in notices[0]
        assert not netns.exists(name) and not path.exists() and names_of(result.run_id) == []
    finally:
        netns.remove(name)
        left.remove()


def test_a_hub_close_that_raises_still_removes_every_namespace_and_the_ledger():
    # Teardown once skipped remove_run when the hub's socket raised on close: every namespace leaked.
    config = ScaleConfig(count=2, mark=2, methods=(Method.NETLINK,), phases=(Phase.CREATE,), settle_timeout_s=5)
    session = Session(config)
    session.open()
    run_id, path = session.run_id, session.ledger.path
    runner.create_with_marks(session, Method.NETLINK, Links.NONE)
    assert len(names_of(run_id)) >= 3  # the hub and two numbered namespaces at least
    hub = session.hub
    assert hub is not None
    real_close = hub.close

    def failing_close() -> None:
        real_close()  # the socket really closes, then the error an unlucky close could raise
        raise OSError(errno.EIO, "injected close failure")

    hub.close = failing_close  # type: ignore[method-assign]
    with pytest.raises(VdevperfError, match="scale: teardown incomplete: .*injected close failure") as info:
        session.close()
    assert "ledger is kept" not in str(info.value)  # every namespace went, and the ledger with them
    assert names_of(run_id) == []
    assert not path.exists()


def test_creation_run_counts_marks_and_teardown_exactly():
    config = ScaleConfig(count=64, mark=16, methods=(Method.NETLINK,), phases=(Phase.CREATE,), settle_timeout_s=5)
    phases = []
    result = runner.run_scale(config, lambda r, phase: phases.append(phase))
    assert phases == ["create netlink", "create"]
    (run,) = result.creation
    assert run.namespaces == 64 and [m.count for m in run.marks] == [16, 32, 48, 64]
    assert all(m.rate_per_s > 0 and m.cumulative_rate_per_s > 0 for m in run.marks)
    assert run.marks[-1].cumulative_rate_per_s == pytest.approx(run.rate_per_s)
    assert run.teardown is not None and run.teardown.namespaces == 64
    # The mark table: two header lines, then N/mark rows.
    assert len(table.marks_table(run).splitlines()) == 2 + 64 // 16
    assert names_of(result.run_id) == []


def test_all_phases_small_run_writes_a_scale_document(tmp_path):
    config = ScaleConfig(
        count=32,
        mark=16,
        methods=(Method.NETLINK, Method.IP_BATCH),
        links=Links.VETH,
        setns_counts=(1, 16),
        setns_samples=200,
        settle_timeout_s=5,
        contention_baseline_samples=5,
    )
    out = document.ScaleFile(path=tmp_path / "scale.json", command=["test"])
    seen = []

    def on_phase(result, phase):
        out.update(result)
        seen.append(phase)
        assert json.loads(out.path.read_text())["phases_done"] == list(result.phases_done)

    result = runner.run_scale(config, on_phase)
    out.update(result, complete=True)
    assert seen == ["create netlink", "create ip-batch", "create", "setns", "memory", "contention"]
    assert [p.namespaces for p in result.setns] == [1, 16, 32]
    for point in result.setns:
        assert 0 < point.round_trip_median_us <= point.round_trip_p99_us
        assert 0 < point.noop_median_us <= point.noop_p99_us
    assert result.memory is not None and result.memory.namespaces == 32 and result.memory.veth_kib is not None
    assert result.memory.netns_kib[1] > 0  # Slab grows with namespaces
    assert result.contention is not None and result.contention.idle.count == 5
    assert result.contention.during.count >= 1
    assert result.build_teardown is not None and result.build_teardown.namespaces == 32
    doc = document.load(out.path)
    assert doc["kind"] == "scale" and doc["schema_version"] == document.SCHEMA_VERSION and doc["complete"]
    assert [len(run["marks"]) for run in doc["methods"]] == [2, 2]
    assert all(run["teardown"]["namespaces"] == 32 for run in doc["methods"])
    assert names_of(result.run_id) == []


DRIVER = textwrap.dedent("""
    import signal, sys
    from vdevperf.errors import Interrupted
    from vdevperf.scale import Links, Method, Phase, ScaleConfig, run_scale

    def interrupted(signum, frame):
        raise Interrupted(signum)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    config = ScaleConfig(count=int(sys.argv[2]), mark=50, methods=(Method(sys.argv[1]),), links=Links.VETH,
                         up=True, phases=(Phase.CREATE,))
    try:
        run_scale(config)
    except Interrupted:
        sys.exit(130)
    sys.exit(0)
""")


def start_driver(method: Method, count: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, method.value, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def wait_mid_creation(proc: subprocess.Popen, at_least: int, timeout: float = 30.0) -> ledger_mod.LedgerRecord:
    """The ledger of ``proc``'s run once at least ``at_least`` of its namespaces exist."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for path in ledger_mod.list_ledgers():
            try:
                record = ledger_mod.read_ledger(path)
            except (OSError, ValueError):
                continue
            if record.owner.pid == proc.pid and len(namespaces_of(record.run_id)) >= at_least:
                return record
        time.sleep(0.002)
    raise AssertionError("creation did not get under way in time")


# Counts large enough that creation is still under way when the signal lands.
SIGNAL_COUNTS = {Method.NETLINK: 1500, Method.IP: 300, Method.IP_BATCH: 2000, Method.UNSHARE: 600}


@pytest.mark.parametrize("method", list(Method))
def test_sigint_mid_creation_leaves_nothing(method):
    proc = start_driver(method, SIGNAL_COUNTS[method])
    record = wait_mid_creation(proc, 5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert names_of(record.run_id) == []
    assert not ledger_mod.ledger_path(record.run_id).exists()


def test_sigterm_mid_creation_leaves_nothing():
    proc = start_driver(Method.NETLINK, SIGNAL_COUNTS[Method.NETLINK])
    record = wait_mid_creation(proc, 5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert names_of(record.run_id) == []


def test_cleanup_removes_what_a_killed_run_left():
    proc = start_driver(Method.NETLINK, SIGNAL_COUNTS[Method.NETLINK])
    record = wait_mid_creation(proc, 5)
    proc.kill()
    proc.communicate(timeout=10)
    assert namespaces_of(record.run_id), "kill -9 should leave namespaces behind"
    report = cleanup()
    assert record.run_id in report.runs
    assert names_of(record.run_id) == []
    assert not ledger_mod.ledger_path(record.run_id).exists()


def _cli_wired() -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "vdevperf", "scale", "--help"], capture_output=True, text=True, cwd=REPO
    )
    return proc.returncode == 0


@pytest.mark.skipif(not _cli_wired(), reason="`vdevperf scale` is not wired into cli.py yet")
def test_cli_scale_prints_tables_writes_json_and_rejects_bad_flags(tmp_path):
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vdevperf",
            "scale",
            "--count",
            "32",
            "--mark",
            "16",
            "--method",
            "netlink,ip-batch",
            "--phases",
            "create,setns",
            "--setns-counts",
            "1",
            "--setns-samples",
            "100",
            "--settle-timeout",
            "5",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "creation, per method" in proc.stdout and "setns latency" in proc.stdout
    doc = document.load(out)
    assert doc["complete"] and [len(r["marks"]) for r in doc["methods"]] == [2, 2]
    assert names_of(doc["run_id"]) == []
    for args, flag in (
        (["--count", "0"], "usage"),
        (["--bridge"], "--bridge"),
        (["--method", "nope"], "usage"),
        (["--count", "99999", "--links", "veth"], "--count"),
    ):
        bad = subprocess.run(
            [sys.executable, "-m", "vdevperf", "scale", *args], capture_output=True, text=True, timeout=30, cwd=REPO
        )
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert bad.stderr.startswith(f"vdevperf: {flag}"), bad.stderr
