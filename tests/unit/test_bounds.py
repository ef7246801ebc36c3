"""Values are bounded up front: each refused in one line naming its flag, before anything is built.

Seen before: -l 1e-9 (ZeroDivisionError), --warmup inf (OverflowError), -S 2G (TypeError), -P 256
under a 1024-descriptor limit (EMFILE), compare -6 with an IPv4-only topology (abandoned half way).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from vdevperf import bench, cli
from vdevperf.errors import VdevperfError
from vdevperf.load import fds
from vdevperf.model import (
    FLOWS,
    INTERVAL_S,
    LENGTH_S,
    MESSAGE_BYTES,
    SOCKBUF_BYTES,
    WARMUP_S,
    TestConfig,
    TestName,
)
from vdevperf.topology import ledger
from vdevperf.topology.spec import BUNDLED_DIR

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail the test if anything reaches the builder or reserves a run id."""

    def never(*args, **kwargs):
        raise AssertionError("a refused value reached the builder")

    monkeypatch.setattr(bench, "build", never)
    monkeypatch.setattr(ledger.Ledger, "create", never)


def one_line(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    return err.strip()


BAD_VALUES = [
    (["-l", "1e-9"], "-l/--length"),
    (["-l", "0.09"], "-l/--length"),
    (["-l", "inf"], "-l/--length"),
    (["-l", "nan"], "-l/--length"),
    (["-l", "86401"], "-l/--length"),
    (["--warmup", "inf"], "--warmup"),
    (["--warmup", "-1"], "--warmup"),
    (["--warmup", "nan"], "--warmup"),
    (["--warmup", "3601"], "--warmup"),
    (["--interval", "0.01"], "--interval"),
    (["--interval", "inf"], "--interval"),
    (["--interval", "0"], "--interval"),
    (["-m", "17M"], "-m/--send-size"),
    (["-m", "0"], "-m/--send-size"),
    (["-M", "2G"], "-M/--recv-size"),
    (["-r", "1,17M"], "-r/--rr-size"),
    (["-s", "2G"], "-s/--client-sockbuf"),
    (["-S", "2G"], "-S/--server-sockbuf"),
    (["-S", "1K,1G"], "-S/--server-sockbuf"),
    (["-P", "257"], "-P/--parallel"),
    (["-P", "0"], "-P/--parallel"),
    # Each in range, but together too much memory: 256 flows x 2 endpoints x 16 MiB.
    (["-P", "256", "-m", "16M"], "-P/-m/-M/-r"),
]


@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize("argv, flag", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_value_out_of_range_is_refused_in_one_line_naming_its_flag(command, argv, flag, capsys, nothing_built):
    line = one_line([command, "veth", *argv], capsys)
    assert line.startswith("vdevperf: ") and flag in line, line
    assert "Traceback" not in line


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--interval", "0.001"], "--interval"),
        (["--interval", "inf"], "--interval"),
        (["-l", "inf"], "-l/--length"),
        (["-l", "1e-9"], "-l/--length"),
        (["--name", ""], "--name"),
        (["--name", "a\x1bb"], "--name"),
    ],
)
def test_monitor_values_are_bounded_too(argv, flag, capsys):
    line = one_line(["monitor", *argv, "--", "true"], capsys)
    assert flag in line and "\x1b" not in line


def test_the_bounds_themselves_are_accepted():
    low = TestConfig(
        test=TestName.TCP_STREAM,
        duration_s=LENGTH_S[0],
        warmup_s=WARMUP_S[0],
        interval_s=INTERVAL_S[0],
        send_size=MESSAGE_BYTES[0],
        recv_size=MESSAGE_BYTES[0],
        flows=FLOWS[0],
        client_sndbuf=SOCKBUF_BYTES[0],
        server_rcvbuf=SOCKBUF_BYTES[0],
    )
    high = TestConfig(
        test=TestName.TCP_RR,
        duration_s=LENGTH_S[1],
        warmup_s=WARMUP_S[1],
        interval_s=INTERVAL_S[1],
        request_size=MESSAGE_BYTES[1],
        response_size=1,
        flows=16,
        send_size=1,
        recv_size=1,
        client_sndbuf=SOCKBUF_BYTES[1],
        server_rcvbuf=SOCKBUF_BYTES[1],
    )
    assert low.duration_s < high.duration_s
    assert TestConfig(test=TestName.TCP_RR, flows=FLOWS[1]).flows == 256


@pytest.mark.parametrize(
    "field, value, flag",
    [
        ("duration_s", 1e-9, "-l"),
        ("duration_s", float("inf"), "-l"),
        ("warmup_s", float("inf"), "--warmup"),
        ("warmup_s", float("nan"), "--warmup"),
        ("interval_s", 0.0, "--interval"),
        ("send_size", 2**31, "-m/-M"),
        ("server_sndbuf", 2**31, "-S"),
        ("client_rcvbuf", 0, "-s"),
        ("flows", 257, "-P"),
        ("request_size", 0, "-r"),
    ],
)
def test_the_model_refuses_the_same_values_from_the_api(field, value, flag):
    # The Python API and a remote server build TestConfig without argparse: the model checks itself.
    with pytest.raises(ValueError) as info:
        TestConfig(test=TestName.TCP_STREAM, **{field: value})
    assert str(info.value).startswith(f"{flag}: ")


def _v4_only(tmp_path: Path, name: str) -> Path:
    text = (BUNDLED_DIR / "veth.toml").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("ipv6")]
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines).replace('name = "veth"', f'name = "{name}"') + "\n")
    return path


def test_compare_checks_the_ip_version_of_every_topology_before_building_any(tmp_path, capsys, nothing_built):
    first, second = _v4_only(tmp_path, "four"), _v4_only(tmp_path, "only")
    line = one_line(["compare", "veth", str(first), "bridge", str(second), "-6", "-l", "1"], capsys)
    assert line.startswith("vdevperf: -6: topologies 'four' (")
    assert "'only' (" in line and "'veth'" not in line and "'bridge'" not in line
    assert "no IPv6 address on both [client] and [server]; nothing was built" in line


def test_run_checks_the_ip_version_before_building(tmp_path, capsys, nothing_built):
    line = one_line(["run", str(_v4_only(tmp_path, "four")), "-6", "-l", "1"], capsys)
    assert line.startswith("vdevperf: -6: topology 'four' (") and "has no IPv6 address" in line


def test_fds_needed_grows_with_flows_and_namespaces():
    base = fds.needed(0, 0)
    assert fds.needed(256, 0) - base == 256 * fds.PER_FLOW
    assert fds.needed(1, 10) - fds.needed(1, 0) == 10 * fds.PER_NAMESPACE


def _in_child(soft: int, hard: int, flows: int) -> tuple[str, int]:
    """reserve(flows) in a forked child under RLIMIT_NOFILE (soft, hard): (outcome, soft limit after)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        outcome = "ok"
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            fds.reserve(flows)
        except VdevperfError as exc:
            outcome = str(exc)
        except BaseException as exc:
            outcome = f"unexpected {exc!r}"
        finally:
            now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            os.write(write, f"{now}\n{outcome}".encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        limit, outcome = f.read().split("\n", 1)
    os.waitpid(pid, 0)
    return outcome, int(limit)


def test_a_short_soft_limit_is_raised_toward_the_hard_one():
    outcome, soft = _in_child(256, 8192, 256)
    assert outcome == "ok" and fds.needed(256, 0) - 16 <= soft <= 8192


def test_a_hard_limit_too_low_is_refused_naming_p():
    outcome, soft = _in_child(1024, 1024, 256)
    assert outcome.startswith("-P: 256 flow(s) need about ") and "hard limit of 1024 (ulimit -Hn)" in outcome
    assert "use at most " in outcome and soft == 1024


def test_enough_descriptors_change_nothing():
    outcome, soft = _in_child(4096, 8192, 4)
    assert outcome == "ok" and soft == 4096


def _limit_to_1024() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_p_256_under_a_1024_hard_limit_is_one_line_before_anything_is_built(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vdevperf",
            "run",
            "veth",
            "-t",
            "TCP_RR",
            "-P",
            "256",
            "-l",
            "1",
            "-o",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_to_1024,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vdevperf: -P: 256 flow(s) need about "), proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_a_stored_run_with_a_value_outside_the_bounds_is_one_line_not_a_traceback(tmp_path, capsys):
    document = json.loads((REPO / "tests" / "data" / "result-v3.json").read_text())
    document["runs"][1]["config"]["duration_s"] = 0.05  # accepted by older versions
    path = tmp_path / "old.json"
    path.write_text(json.dumps(document))
    line = one_line(["report", str(path)], capsys)
    assert line == f"vdevperf: {path}: run 2: -l: 0.05 is outside 0.1-86400 s"
