"""Values are bounded up front: each refused in one line naming its flag, before anything is built.

Seen before: -l 1e-9 (ZeroDivisionError), --warmup inf (OverflowError), -S 2G (TypeError).
"""

from __future__ import annotations

import pytest

from vdevperf import bench, cli
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
    (["-l", "1e-9"], "-l/--length"), (["-l", "0.09"], "-l/--length"), (["-l", "inf"], "-l/--length"),
    (["-l", "nan"], "-l/--length"), (["-l", "86401"], "-l/--length"),
    (["--warmup", "inf"], "--warmup"), (["--warmup", "-1"], "--warmup"), (["--warmup", "nan"], "--warmup"),
    (["--warmup", "3601"], "--warmup"),
    (["--interval", "0.01"], "--interval"), (["--interval", "inf"], "--interval"), (["--interval", "0"], "--interval"),
    (["-m", "17M"], "-m/--send-size"), (["-m", "0"], "-m/--send-size"), (["-M", "2G"], "-M/--recv-size"),
    (["-r", "1,17M"], "-r/--rr-size"),
    (["-s", "2G"], "-s/--client-sockbuf"), (["-S", "2G"], "-S/--server-sockbuf"),
    (["-S", "1K,1G"], "-S/--server-sockbuf"),
    (["-P", "257"], "-P/--parallel"), (["-P", "0"], "-P/--parallel"),
    # Each in range, but together too much memory: 256 flows x 2 endpoints x 16 MiB.
    (["-P", "256", "-m", "16M"], "-P/-m/-M/-r"),
]


@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize("argv, flag", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_value_out_of_range_is_refused_in_one_line_naming_its_flag(command, argv, flag, capsys, nothing_built):
    line = one_line([command, "veth", *argv], capsys)
    assert line.startswith("vdevperf: ") and flag in line, line
    assert "Traceback" not in line


@pytest.mark.parametrize("argv, flag", [
    (["--interval", "0.001"], "--interval"), (["--interval", "inf"], "--interval"), (["-l", "inf"], "-l/--length"),
    (["-l", "1e-9"], "-l/--length"), (["--name", ""], "--name"), (["--name", "a\x1bb"], "--name"),
])
def test_monitor_values_are_bounded_too(argv, flag, capsys):
    line = one_line(["monitor", *argv, "--", "true"], capsys)
    assert flag in line and "\x1b" not in line


def test_the_bounds_themselves_are_accepted():
    low = TestConfig(test=TestName.TCP_STREAM, duration_s=LENGTH_S[0], warmup_s=WARMUP_S[0], interval_s=INTERVAL_S[0],
                     send_size=MESSAGE_BYTES[0], recv_size=MESSAGE_BYTES[0], flows=FLOWS[0],
                     client_sndbuf=SOCKBUF_BYTES[0], server_rcvbuf=SOCKBUF_BYTES[0])
    high = TestConfig(test=TestName.TCP_RR, duration_s=LENGTH_S[1], warmup_s=WARMUP_S[1], interval_s=INTERVAL_S[1],
                      request_size=MESSAGE_BYTES[1], response_size=1, flows=16, send_size=1, recv_size=1,
                      client_sndbuf=SOCKBUF_BYTES[1], server_rcvbuf=SOCKBUF_BYTES[1])
    assert low.duration_s < high.duration_s
    assert TestConfig(test=TestName.TCP_RR, flows=FLOWS[1]).flows == 256


@pytest.mark.parametrize("field, value, flag", [
    ("duration_s", 1e-9, "-l"), ("duration_s", float("inf"), "-l"), ("warmup_s", float("inf"), "--warmup"),
    ("warmup_s", float("nan"), "--warmup"), ("interval_s", 0.0, "--interval"), ("send_size", 2 ** 31, "-m/-M"),
    ("server_sndbuf", 2 ** 31, "-S"), ("client_rcvbuf", 0, "-s"), ("flows", 257, "-P"), ("request_size", 0, "-r"),
])
def test_the_model_refuses_the_same_values_from_the_api(field, value, flag):
    # The Python API and a remote server build TestConfig without argparse: the model checks itself.
    with pytest.raises(ValueError) as info:
        TestConfig(test=TestName.TCP_STREAM, **{field: value})
    assert str(info.value).startswith(f"{flag}: ")


