"""Malformed result files: every one is refused in one line naming it, never with a traceback (no root needed).

A Hypothesis fuzz feeds ``vdevperf report`` and ``vdevperf diff`` arbitrary
bytes, corrupted serialisations of real files, and structurally mutated
documents of every schema version; the shipped checker (vdevperf.jsoncheck)
is held against jsonschema, the reference implementation.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vdevperf import cli
from vdevperf.jsoncheck import Schema
from vdevperf.model import MetricInterval, Metrics, TestConfig
from vdevperf.report import formats
from vdevperf.results import OPTIONAL_CONFIG_KEYS, OPTIONAL_METRIC_KEYS, SCHEMA_VERSION, load, schema

DATA = Path(__file__).parents[1] / "data"
BAD = DATA / "bad_results"
GOLDEN = sorted(DATA.glob("result-v*.json"))
SEEDS = [json.loads(p.read_text()) for p in GOLDEN]
SCHEMA_DOC = json.loads((Path(__file__).parents[2] / "vdevperf" / "schema" / "result.schema.json").read_text())
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _vdevperf(capsys, *args: str) -> tuple[int, str]:
    """Exit status and stderr of vdevperf in this process; a traceback fails the test by itself."""
    status = cli.main(list(args))
    return status, capsys.readouterr().err


def _assert_clean(capsys, path: Path, *commands: tuple[str, ...]) -> None:
    for command in commands:
        status, err = _vdevperf(capsys, *command)
        assert status in (0, 2), (command, status, err)
        assert len(err.splitlines()) <= 1, (command, err)
        if status == 2:
            assert err.startswith(f"vdevperf: {path}: "), (command, err)


def _both(path: Path, fmt: str = "plain") -> list[tuple[str, ...]]:
    return [("report", str(path), "--format", fmt), ("diff", str(path), str(path))]


# Values a mutation puts in place of a node: JSON of every type, edges of numbers, and the document's own keys.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 8),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324]),
    st.text(max_size=8),
    st.sampled_from(["ok", "unsupported", "TCP_RR", "TCP_STREAM", "veth", "run", "scale", "client", "server", "steal"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def mutated(draw) -> dict:
    """A real document with one to three structural mutations at nodes of any depth."""
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        parent, key = None, None
        node = doc
        # Walk down from the root, stopping at each level with probability 1/4.
        while isinstance(node, dict | list) and node and draw(st.integers(0, 3)) > 0:
            parent = node
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            node = node[key]
        if parent is None:
            continue
        op = draw(st.sampled_from(["replace", "delete", "empty", "wrap", "copy", "extra"]))
        if op == "replace":
            parent[key] = draw(_VALUES)
        elif op == "delete":
            del parent[key]
        elif op == "empty":
            parent[key] = type(node)() if isinstance(node, dict | list | str) else None
        elif op == "wrap":
            parent[key] = [node]
        elif op == "copy":  # another node of the same parent: right shape, wrong place
            other = draw(st.sampled_from(sorted(parent) if isinstance(parent, dict) else range(len(parent))))
            parent[key] = copy.deepcopy(parent[other])
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=6))] = draw(_VALUES)
        else:
            parent.append(copy.deepcopy(node))
    return doc


@FUZZ
@given(data=st.binary(max_size=200))
def test_any_bytes_are_refused_or_read_in_one_line(tmp_path, capsys, data):
    path = tmp_path / "r.json"
    path.write_bytes(data)
    _assert_clean(capsys, path, *_both(path))


@FUZZ
@given(
    seed=st.sampled_from(GOLDEN),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_bytes_of_real_files_are_refused_or_read(tmp_path, capsys, seed, edits):
    data = bytearray(seed.read_bytes())
    for where, byte in edits:
        data[int(where * (len(data) - 1))] = byte
    path = tmp_path / "r.json"
    path.write_bytes(bytes(data))
    _assert_clean(capsys, path, *_both(path))


@FUZZ
@given(doc=mutated(), fmt=st.sampled_from(formats.FORMATS))
def test_mutated_documents_are_refused_or_read_in_one_line(tmp_path, capsys, doc, fmt):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    _assert_clean(capsys, path, *_both(path, fmt))


@FUZZ
@given(doc=mutated())
def test_what_the_checker_accepts_jsonschema_accepts(doc):
    """The checker is at least as strict as jsonschema on every upgraded document."""
    if doc.get("schema_version") != SCHEMA_VERSION:
        return
    if schema().problem(doc) is None:
        jsonschema.validate(doc, SCHEMA_DOC)


@FUZZ
@given(doc=mutated())
def test_what_jsonschema_refuses_the_checker_refuses(doc):
    if doc.get("schema_version") != SCHEMA_VERSION:
        return
    try:
        jsonschema.validate(doc, SCHEMA_DOC)
    except jsonschema.ValidationError:
        assert schema().problem(doc) is not None


def test_the_schema_closes_what_the_reader_turns_into_dataclasses():
    """A key the model lacks is refused by the schema, not by a TypeError in run_from_json."""
    run = SCHEMA_DOC["$defs"]["run"]["properties"]
    intervals = run["confidence"]["properties"]["intervals"]["items"]
    # Keys added within schema_version 6: optional, so older files load. -K, -D and -Z are read back
    # as the model's defaults when absent, so each has one, and --engine as "python" (what older runs
    # ran); --percentiles keys are written only when asked.
    added = {"congestion_control", "nodelay", "zerocopy", "engine"}
    for node, model, optional in (
        (run["config"], TestConfig, added | set(OPTIONAL_CONFIG_KEYS)),
        (SCHEMA_DOC["$defs"]["metrics"], Metrics, set(OPTIONAL_METRIC_KEYS)),
        (intervals, MetricInterval, set()),
    ):
        assert node["additionalProperties"] is False
        fields = {f.name: f for f in dataclasses.fields(model)}
        assert set(node["properties"]) == set(fields)
        assert set(node["properties"]) - set(node["required"]) == optional
        assert all(fields[name].default is not dataclasses.MISSING for name in optional)


def test_the_checker_knows_every_keyword_of_the_shipped_schema():
    Schema(SCHEMA_DOC)  # raises on a keyword it does not implement
    with pytest.raises(ValueError, match="not supported"):
        Schema({"type": "object", "patternProperties": {}})


def _expected() -> dict[str, str]:
    """tests/data/bad_results/expected.txt: each bad file's name and the reason vdevperf must give."""
    lines = (BAD / "expected.txt").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_every_bad_file_has_an_expected_reason():
    assert sorted(_expected()) == sorted(p.name for p in BAD.glob("*.json"))


@pytest.mark.parametrize("name, why", sorted(_expected().items()))
def test_each_bad_file_is_one_line_naming_it_and_what_is_wrong(capsys, name, why):
    path = BAD / name
    for command in (["report", str(path)], ["diff", str(path), str(GOLDEN[-1])], ["diff", str(GOLDEN[-1]), str(path)]):
        status, err = _vdevperf(capsys, *command)
        assert (status, err) == (2, f"vdevperf: {path}: {why}\n")


def test_deep_nesting_is_refused_in_one_line(tmp_path, capsys):
    for text in ("[" * 100_000 + "]" * 100_000, '{"schema_version": 1, "runs": ' + "[" * 900 + "]" * 900 + "}"):
        path = tmp_path / "deep.json"
        path.write_text(text)
        status, err = _vdevperf(capsys, "report", str(path))
        assert status == 2 and len(err.splitlines()) == 1 and str(path) in err, err


def test_a_directory_skips_other_kinds_with_a_note_and_reports_the_runs(tmp_path, capsys):
    (tmp_path / "run.json").write_bytes(GOLDEN[-1].read_bytes())
    (tmp_path / "scale.json").write_text(json.dumps({"kind": "scale", "schema_version": 1, "methods": []}))
    (tmp_path / "monitor.json").write_text(json.dumps({"labels": ["x"], "interval_s": 1, "rows": []}))
    (tmp_path / "list.json").write_text("[1, 2]")
    status = cli.main(["report", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 0 and "veth" in out
    assert sorted(err.splitlines()) == [
        f"vdevperf: {tmp_path / 'list.json'}: skipped: not a vdevperf result file (a JSON array)",
        f"vdevperf: {tmp_path / 'monitor.json'}: skipped: not a vdevperf result file (no schema_version)",
        f"vdevperf: {tmp_path / 'scale.json'}: skipped: holds 'scale' results, not test runs",
    ]
    assert cli.main(["diff", str(tmp_path), str(tmp_path)]) == 0


def test_a_directory_still_refuses_a_malformed_run_result(tmp_path, capsys):
    (tmp_path / "a.json").write_bytes(GOLDEN[-1].read_bytes())
    (tmp_path / "b.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "runs": None}))
    status, err = _vdevperf(capsys, "report", str(tmp_path))
    assert status == 2 and err.startswith(f"vdevperf: {tmp_path / 'b.json'}: not a valid result file")


def test_a_file_of_another_kind_named_alone_is_refused(tmp_path, capsys):
    path = tmp_path / "scale.json"
    path.write_text(json.dumps({"kind": "scale", "schema_version": 1}))
    status, err = _vdevperf(capsys, "report", str(path))
    assert status == 2 and err == f"vdevperf: {path}: holds 'scale' results, not test runs\n"


def test_the_golden_files_still_load_and_validate():
    for path in GOLDEN:
        jsonschema.validate(load(path), SCHEMA_DOC)


def test_random_bytes_through_the_real_command(tmp_path):
    path = tmp_path / "random.json"
    path.write_bytes(bytes(range(256)) * 4)
    for command in (["report", str(path)], ["diff", str(path), str(path)]):
        proc = subprocess.run([sys.executable, "-m", "vdevperf", *command], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stderr == f"vdevperf: {path}: not JSON: not UTF-8 text (byte 128)\n"
