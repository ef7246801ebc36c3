"""End to end through ``python -m vdevperf``: real runs, results, signals, cleanup, bad input."""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import psutil
import pytest

from vdevperf.topology import ledger as ledger_mod
from vdevperf.topology import naming, netns
from vdevperf.topology.probe import probe_kinds

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "vdevperf" / "schema" / "result.schema.json").read_text())
FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def vdevperf(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdevperf", *args], capture_output=True, text=True, timeout=120, **kwargs
    )


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vdevperf", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def runs_of(pid: int) -> list[ledger_mod.LedgerRecord]:
    records = []
    for path in ledger_mod.list_ledgers():
        try:
            record = ledger_mod.read_ledger(path)
        except (OSError, ValueError):
            continue
        if record.owner.pid == pid:
            records.append(record)
    return records


def wait_until_measuring(proc: subprocess.Popen, timeout: float = 20.0) -> ledger_mod.LedgerRecord:
    """The ledger of ``proc``'s run once both endpoint processes exist."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        records = runs_of(proc.pid)
        if records and len(records[0].pids) >= 2:
            return records[0]
        time.sleep(0.05)
    raise AssertionError("the run did not start its endpoints in time")


def traces(record: ledger_mod.LedgerRecord) -> list[str]:
    left = [name for name in record.namespaces if netns.exists(name)]
    left += [
        f"pid {p.pid}"
        for p in record.pids
        if psutil.pid_exists(p.pid) and psutil.Process(p.pid).status() != psutil.STATUS_ZOMBIE
    ]
    if ledger_mod.ledger_path(record.run_id).exists():
        left.append("ledger")
    return left


def busy_us(start: dict, end: dict) -> float:
    """Guest CPU-µs between two raw samples, computed here independently of vdevperf.measure:
    elapsed time on every CPU minus the idle and the steal time /proc/stat reported (steal is
    the host's, not the guest's, and CI hosts do steal)."""
    idle, steal = FIELDS.index("idle"), FIELDS.index("steal")
    elapsed = end["t_s"] - start["t_s"]
    return (
        sum(
            elapsed - (e[idle] - s[idle]) - (e[steal] - s[steal]) for s, e in zip(start["cpu"], end["cpu"], strict=True)
        )
        * 1e6
    )


def test_run_writes_a_valid_result_whose_figures_follow_from_its_raw_samples(tmp_path):
    out = tmp_path / "r.json"
    proc = vdevperf(
        "run",
        "veth",
        "-t",
        "TCP_STREAM,TCP_RR",
        "-l",
        "1",
        "--warmup",
        "0.3",
        "--interval",
        "0.25",
        "-T",
        "1,0",
        "--json",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document == json.loads(out.read_text())
    jsonschema.validate(document, SCHEMA)
    assert [run["test"] for run in document["runs"]] == ["TCP_STREAM", "TCP_RR"]
    for run in document["runs"]:
        assert len(run["iterations"]) == 1 and run["confidence"] is None and run["unstable"] is False
        iteration = run["iterations"][0]
        raw, metrics = iteration["raw"], iteration["metrics"]
        assert metrics == run["metrics"]
        assert raw["cpu_fields"] == list(FIELDS)
        first, last = raw["samples"][0], raw["samples"][-1]
        assert len(raw["samples"]) >= 4  # window start, ticks every 0.25 s, window end
        names = raw["counter_names"]
        work_name = "flow0.server.bytes_received" if run["test"] == "TCP_STREAM" else "flow0.client.transactions"
        work = last["counters"][names.index(work_name)] - first["counters"][names.index(work_name)]
        assert work > 0
        cpu_us = busy_us(first, last)
        if run["test"] == "TCP_STREAM":
            assert metrics["service_demand_us_per_kb"] == pytest.approx(cpu_us / (work / 1024), rel=1e-9)
            assert metrics["throughput_mbps"] == pytest.approx(work * 8 / (last["t_s"] - first["t_s"]) / 1e6)
            assert metrics["transactions_per_s"] is None and metrics["service_demand_us_per_tr"] is None
        else:
            assert metrics["service_demand_us_per_tr"] == pytest.approx(cpu_us / work, rel=1e-9)
            assert metrics["throughput_mbps"] is None and metrics["service_demand_us_per_kb"] is None
        assert 0 < metrics["cpu_util_pct"] <= 100
        # Placement: what -T asked for, what the kernel granted, where the ends were seen running.
        client, server = (
            {(e["flow"], e["role"]): e for e in iteration["endpoints"]}[0, role] for role in ("client", "server")
        )
        assert client["placement"]["requested_cpu"] == 1 and client["placement"]["affinity"] == [1]
        assert server["placement"]["requested_cpu"] == 0 and server["placement"]["affinity"] == [0]
        assert set(client["placement"]["observed_cpus"]) == {"1"}
        assert set(server["placement"]["observed_cpus"]) == {"0"}
        assert client["socket"]["congestion_control"] == document["environment"]["tcp_congestion_control"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_tears_everything_down_and_dies_by_that_signal(tmp_path, signum):
    proc = start("run", "veth", "-l", "30", "-o", str(tmp_path / "r.json"))
    record = wait_until_measuring(proc)
    assert all(netns.exists(name) for name in record.namespaces)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == -signum
    assert err.strip().splitlines() == [f"vdevperf: interrupted by {signal.Signals(signum).name}"]
    assert traces(record) == []


def test_cleanup_after_kill_9_removes_the_dead_run(tmp_path):
    proc = start("run", "veth", "-t", "TCP_RR", "-l", "30", "-o", str(tmp_path / "r.json"))
    record = wait_until_measuring(proc)
    proc.kill()
    proc.communicate(timeout=10)
    assert any(netns.exists(name) for name in record.namespaces), "kill -9 should leave the namespaces"
    done = vdevperf("cleanup")
    assert done.returncode == 0, done.stderr
    assert record.run_id in done.stdout
    assert traces(record) == []
    assert record.run_id not in vdevperf("cleanup").stdout


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    # A run that got as far as building first sweeps dead runs, and says so if it removed some
    # (another vdevperf on this machine may have been killed meanwhile): not part of the error.
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("vdevperf: removed what ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("name", ["unknown_kind", "missing_parent", "duplicate_device", "address_invalid"])
def test_bad_topology_file_gives_one_line_naming_it_and_builds_nothing(name):
    before = set(netns.list_ours())
    path = f"tests/data/bad_topologies/{name}.toml"
    line = _one_line_error(vdevperf("run", path, "-l", "1", cwd=REPO))
    assert line.startswith(f"vdevperf: {path}: ")
    assert set(netns.list_ours()) == before


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["-t", "TCP_FOO"], "-t/--test"),
        (["-l", "0"], "-l/--length"),
        (["-m", "12Q"], "-m/--send-size"),
        (["-r", "1,2,3"], "-r/--rr-size"),
        (["-T", "99,0"], "-T/--cpu"),
        (["-P", "0"], "-P/--parallel"),
        (["-I", "120,5"], "-I/--confidence"),
        (["-i", "2,x"], "-i/--iterations"),
        (["-s", "-1"], "-s/--client-sockbuf"),
        (["-t", "UDP_STREAM", "-m", "70000"], "-m"),
    ],
)
def test_bad_flag_gives_one_line_naming_it(argv, flag):
    assert flag in _one_line_error(vdevperf("run", "veth", *argv))


def _ipvlan_supported() -> bool:
    return any(k.kind == "ipvlan" and k.supported for k in probe_kinds())


def test_compare_shows_a_kind_the_kernel_lacks_as_a_row(tmp_path):
    if _ipvlan_supported():
        pytest.skip("this kernel has ipvlan: nothing unsupported to show")
    proc = vdevperf(
        "compare",
        "veth",
        "ipvlan",
        "-t",
        "TCP_RR",
        "-l",
        "0.5",
        "--warmup",
        "0.1",
        "--rounds",
        "2",
        "-o",
        str(tmp_path / "c.json"),
    )
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.split()[:1] in (["veth"], ["ipvlan"])}
    assert "unsupported by this kernel" in rows["ipvlan"]
    assert "Trans/s" in rows["veth"] and "baseline" in rows["veth"]
    stored = json.loads((tmp_path / "c.json").read_text())
    jsonschema.validate(stored, SCHEMA)
    assert [r["status"] for r in stored["runs"]] == ["ok", "unsupported"]


def test_run_on_a_kind_the_kernel_lacks_says_so_in_one_line():
    if _ipvlan_supported():
        pytest.skip("this kernel has ipvlan")
    before = set(netns.list_ours())
    line = _one_line_error(vdevperf("run", "ipvlan", "-l", "1"))
    assert line == ("vdevperf: topology ipvlan: device kind 'ipvlan' is not supported by this kernel (CONFIG_IPVLAN)")
    assert set(netns.list_ours()) == before


def _drop_all_capabilities() -> None:
    """In the child before exec: empty the bounding set, so even root execs without capabilities."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP; fails harmlessly past the last capability


@pytest.mark.parametrize("command", [["run", "veth", "-l", "1"], ["compare", "-l", "1"], ["cleanup"]])
def test_without_privileges_commands_say_so_in_one_line(command):
    line = _one_line_error(vdevperf(*command, preexec_fn=_drop_all_capabilities))
    assert "needs root" in line


def test_run_starts_by_sweeping_what_a_dead_run_left_and_says_so_in_one_line(tmp_path):
    # A dead run: its owner is gone, its namespace (journalled as created) is still there.
    dead = subprocess.Popen(["sleep", "30"])
    owner = ledger_mod.PidRecord(dead.pid, ledger_mod.process_start_time(dead.pid))
    dead.kill()
    dead.wait()
    run_id = naming.new_run_id(ledger_mod.run_ids_in_use())
    name = naming.netns_name(run_id, "cli")
    path = ledger_mod.ledger_path(run_id)
    ledger_mod.LEDGER_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ledger_mod.LedgerRecord(run_id=run_id, owner=owner, namespaces=(name,)).to_json()))
    try:
        netns.create(name)
        ident = ledger_mod.Identity.of(netns.path(name))
        ledger_mod.journal_path(path).write_text(json.dumps({"name": name, "dev": ident.dev, "ino": ident.ino}) + "\n")
        proc = vdevperf("run", "loopback", "-t", "TCP_RR", "-l", "0.2", "--warmup", "0", "-o", str(tmp_path / "r.json"))
        assert proc.returncode == 0, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vdevperf: removed what "), proc.stderr
        assert run_id in lines[0] and " namespace(s), " in lines[0]
        assert not netns.exists(name) and not path.exists()
        # Nothing left to sweep: the next run says nothing.
        again = vdevperf(
            "run", "loopback", "-t", "TCP_RR", "-l", "0.2", "--warmup", "0", "-o", str(tmp_path / "s.json")
        )
        assert again.returncode == 0 and run_id not in again.stderr
    finally:
        netns.remove(name)
        ledger_mod.remove_files(path)


# -P 256 through bench.run, in a process of its own under a 1024 soft / 4096 hard descriptor limit.
# One attempt (no noise-gate retries): 512 endpoints on a small machine take seconds per attempt.
P256 = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))
from vdevperf import bench, rounds
from vdevperf.model import TestConfig, TestName
from vdevperf.results import ResultFile
from vdevperf.topology.spec import load_topology
cfg = TestConfig(test=TestName.TCP_RR, flows=256, duration_s=0.1, warmup_s=0.0)
results = ResultFile(path=__import__("pathlib").Path(sys.argv[1]), command=["test"])
[run] = bench.run(load_topology("loopback"), [cfg], results, plan=rounds.Plan(rounds=1, max_retries=0))
print(json.dumps({"soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "flows": len(run.metrics.flows),
                  "rate": run.metrics.transactions_per_s}))
"""


def test_p_256_runs_under_a_1024_soft_limit_by_raising_it(tmp_path):
    # 512 endpoints: the parent holds over 1,000 descriptors, past select()'s 1024 too.
    proc = subprocess.run(
        [sys.executable, "-c", P256, str(tmp_path / "r.json")], capture_output=True, text=True, timeout=180, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["flows"] == 256 and facts["rate"] > 0
    assert 1024 < facts["soft"] <= 4096


def test_names_carry_prefix_and_run_id():
    # The naming scheme the leak checks rely on.
    assert naming.netns_name("a1b2", "cli") == "vdp-a1b2-cli"
    assert naming.ifname("a1b2", "veth0") == "vdpa1b2veth0"
