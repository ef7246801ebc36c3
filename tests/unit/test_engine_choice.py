"""--engine: checked like every flag, one fallback to the Python loops, recorded in results (no root needed).

The fallback is simulated by making load.native.module find nothing: that is our own import of the
C modules, not something the kernel does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vdevperf
from vdevperf import api, cli
from vdevperf.counters import SLOTS
from vdevperf.errors import VdevperfError
from vdevperf.load import native, stream
from vdevperf.load.context import LoopContext
from vdevperf.load.tests import NATIVE_LOOPS, TESTS, engine_of
from vdevperf.measure.endpoints import EndpointReport, Finished, Ready, SocketFacts
from vdevperf.model import UDP_TIMESTAMP_BYTES, TestConfig, TestName
from vdevperf.remote import protocol
from vdevperf.results import _config_from_json, _config_to_json, load, runs_of

DATA = Path(__file__).parents[1] / "data"
GOLDEN = sorted(DATA.glob("result-v*.json"))
FALLBACK = "native loops unavailable ("


@pytest.fixture
def unbuilt(monkeypatch):
    """The C modules as if they had not built."""
    monkeypatch.setattr(native, "module", lambda part: None)


def test_an_unknown_engine_is_refused_in_one_line_naming_the_flag():
    with pytest.raises(ValueError, match=r"^--engine: 'c' is not one of native, python$"):
        TestConfig(TestName.TCP_STREAM, engine="c")
    with pytest.raises(VdevperfError) as raised:
        vdevperf.run("veth", "TCP_STREAM", engine="c")
    assert raised.value.what == "--engine"


def test_the_cli_refuses_an_unknown_engine_before_anything_is_built(capsys):
    assert cli.main(["run", "veth", "--engine", "c"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--engine" in err and "native" in err


def test_the_native_loops_built_here():
    """CI builds the extension (pip install -e): a build that failed there fails here, not silently."""
    assert native.missing() is None
    assert api.usable_engine("native", pytest.fail) == "native"


def test_native_falls_back_to_python_with_one_line(unbuilt):
    notes: list[str] = []
    assert native.missing() is not None
    assert api.usable_engine("native", notes.append) == "python"
    assert len(notes) == 1 and notes[0].startswith(FALLBACK) and notes[0].endswith("): using the Python loops")
    configs = api.test_configs([TestName.TCP_STREAM, TestName.TCP_RR], api.UNPINNED, notice=notes.append)
    assert [c.engine for c in configs] == ["python", "python"] and len(notes) == 2  # one line per call


def test_python_asked_is_python_without_a_word(unbuilt):
    configs = api.test_configs([TestName.TCP_STREAM], api.UNPINNED, engine="python", notice=pytest.fail)
    assert configs[0].engine == "python"


def test_the_cli_says_the_fallback_once_on_stderr(unbuilt, capsys):
    # Two tests with --offload-matrix are refused after the configs are made, before anything is built.
    status = cli.main(["run", "veth", "-t", "TCP_STREAM,TCP_RR", "--offload-matrix", "tso"])
    err = capsys.readouterr().err.splitlines()
    assert status == 2
    assert [line for line in err if FALLBACK in line] == [
        f"vdevperf: native loops unavailable ({native.missing()}): using the Python loops"
    ]


def test_the_config_keeps_its_engine_and_older_files_ran_python():
    for engine in ("native", "python"):
        cfg = TestConfig(TestName.UDP_STREAM, send_size=1472, engine=engine)
        stored = _config_to_json(cfg)
        assert stored["engine"] == engine
        assert _config_from_json(json.loads(json.dumps(stored))) == cfg
    older = {k: v for k, v in _config_to_json(TestConfig(TestName.TCP_RR)).items() if k != "engine"}
    assert _config_from_json(older).engine == "python"
    for path in GOLDEN:  # every version written before --engine, version 1 upgraded on load
        runs = runs_of(path, load(path))
        assert runs and {r.config.engine for r in runs} == {"python"}, path.name


def test_an_endpoint_reports_its_engine_in_the_result_but_not_on_the_wire():
    facts = SocketFacts(sndbuf_bytes=4096, rcvbuf_bytes=4096)
    ready = Ready.from_message(
        7, {"placement": {"requested_cpu": None, "affinity": [0]}, "socket": facts.to_json(), "engine": "native"}
    )
    assert ready.engine == "native"
    report = EndpointReport(0, "client", ready, Finished({0: 1}, tuple(range(len(SLOTS)))))
    assert report.to_json()["engine"] == "native"
    # A remote server's started message is unchanged (protocol version 3): no engine, none read back.
    protocol.MESSAGES["started"].check({"endpoints": [ready.to_json()]}, "started")
    assert Ready.from_json(ready.to_json()).engine is None
    assert "engine" not in EndpointReport(0, "server", Ready.from_json(ready.to_json()), report.finished).to_json()


def _ctx(cfg: TestConfig, native_ok: bool = True) -> LoopContext:
    return LoopContext(None, cfg, memoryview(bytearray(8 * len(SLOTS))).cast("q"), memoryview(b""), native=native_ok)


@pytest.mark.parametrize(
    ("cfg", "client", "server"),
    [
        (TestConfig(TestName.TCP_STREAM), "native", "native"),
        (TestConfig(TestName.TCP_STREAM, fq_rate_bps=1e9), "native", "native"),  # the kernel paces
        (TestConfig(TestName.TCP_MAERTS), "native", "native"),
        (TestConfig(TestName.UDP_STREAM, send_size=1472), "native", "native"),
        (TestConfig(TestName.UDP_STREAM, send_size=8, recv_size=8), "native", "native"),  # too small to stamp
        (TestConfig(TestName.TCP_STREAM, zerocopy=True), "python", "native"),
        (TestConfig(TestName.TCP_STREAM, rate_bps=1e9), "native", "native"),  # -b: paced_send_loop's C
        (TestConfig(TestName.TCP_MAERTS, rate_bps=1e9), "native", "native"),
        (TestConfig(TestName.UDP_STREAM, send_size=1472, rate_bps=1e9), "native", "native"),
        (TestConfig(TestName.TCP_SENDFILE), "native", "native"),
    ],
)
def test_a_stream_loop_is_native_exactly_where_it_hands_its_work_to_c(cfg, client, server):
    tdef = TESTS[cfg.test]
    assert (engine_of(tdef.client_loop, _ctx(cfg)), engine_of(tdef.server_loop, _ctx(cfg))) == (client, server)
    assert engine_of(tdef.client_loop, _ctx(cfg, native_ok=False)) == "python"


def test_every_native_loop_is_a_loop_of_some_test():
    loops = {loop for tdef in TESTS.values() for loop in (tdef.client_loop, tdef.server_loop)}
    assert set(NATIVE_LOOPS) <= loops
    assert set(stream.NATIVE_LOOPS) == {
        stream.send_loop,
        stream.sendfile_loop,
        stream.recv_loop,
        stream.udp_send_loop,
        stream.udp_recv_loop,
    }


def test_the_c_stream_loops_share_the_counter_layout_and_the_stamp():
    module = native.module("stream")
    assert module is not None
    assert module.SLOTS == SLOTS
    assert module.STAMP_BYTES == stream._STAMP.size == UDP_TIMESTAMP_BYTES
