"""Results that must not collide or get lost: exclusive default names, unwritable paths refused before
anything is built, and a failing write that moves the results elsewhere (no root needed)."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_results import _measured_run

from vdevperf import bench, cli, results
from vdevperf.cli import monitor as monitor_command
from vdevperf.cli import scale as scale_command
from vdevperf.errors import ResultError, VdevperfError
from vdevperf.measure.env import environment
from vdevperf.results import ResultFile, create_exclusive, load


def _create_many(directory: str, worker: int, count: int, queue) -> None:
    for n in range(count):
        queue.put(str(create_exclusive(Path(directory), "vdevperf-20261201-000000", f"{worker}.{n}")))


def test_concurrent_creations_of_one_name_get_distinct_files(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_create_many, args=(str(tmp_path), w, 5, queue)) for w in range(12)]
    for w in workers:
        w.start()
    paths = [queue.get(timeout=30) for _ in range(60)]
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    assert len(set(paths)) == 60
    # Each file holds what its creator wrote, and nothing else is left in the directory.
    assert sorted(Path(p).read_text() for p in paths) == sorted(f"{w}.{n}" for w in range(12) for n in range(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in paths)


def test_result_files_claimed_at_once_are_distinct_and_complete(tmp_path):
    here = environment()

    def claim(_: int) -> Path:
        file = ResultFile(path=None, command=["vdevperf"], environment=here)
        file.claim(None, tmp_path)
        return file.path

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(claim, range(16)))
    assert len(set(paths)) == 16 and all(p.parent == tmp_path for p in paths)
    assert all(load(p)["runs"] == [] for p in paths)  # a valid document from the first instant


def test_without_hard_links_names_are_still_taken_exclusively(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    paths = {create_exclusive(tmp_path, "r", str(n)) for n in range(3)}
    assert sorted(p.name for p in paths) == ["r-2.json", "r-3.json", "r.json"]
    assert sorted(p.read_text() for p in paths) == ["0", "1", "2"]


def _forbid_measuring(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("something was built or measured before the result path was checked")

    for name in ("build", "run", "compare", "offload_matrix", "run_remote"):
        monkeypatch.setattr(bench, name, boom)
    monkeypatch.setattr(scale_command, "run_scale", boom)
    monkeypatch.setattr(monitor_command, "watch", boom)


def _unwritable(tmp_path: Path) -> list[tuple[Path, str]]:
    (tmp_path / "file").write_text("")
    return [
        (tmp_path, "is a directory; name a file to write the results to"),
        (tmp_path / "file" / "r.json", f"cannot write results there: {tmp_path / 'file'} is not a directory"),
        (Path("/dev/null"), "is not a regular file; results replace the file they are written to"),
        (Path("/proc/vdevperf-test.json"), "cannot write results there: No such file or directory"),
    ]


@pytest.mark.parametrize(
    "command",
    [
        ["run", "loopback", "-t", "TCP_RR"],
        ["compare", "loopback", "veth"],
        ["run", "loopback", "--offload-matrix", "tso"],
        ["scale", "--count", "10"],
    ],
)
def test_an_unwritable_output_is_refused_before_anything_is_built(tmp_path, capsys, monkeypatch, command):
    _forbid_measuring(monkeypatch)
    for path, why in _unwritable(tmp_path):
        status = cli.main([*command, "-o", str(path)])
        assert (status, capsys.readouterr().err) == (2, f"vdevperf: {path}: {why}\n")


def test_monitor_refuses_an_unwritable_output_before_watching(tmp_path, capsys, monkeypatch):
    _forbid_measuring(monkeypatch)
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "m.csv"
    assert cli.main(["monitor", "--pid", str(os.getpid()), "-l", "1", "-o", str(path)]) == 2
    why = f"cannot write results there: {path.parent} is not a directory"
    assert capsys.readouterr().err == f"vdevperf: {path}: {why}\n"


def test_a_default_result_file_that_cannot_be_created_is_refused_before_anything_is_built(
    tmp_path, capsys, monkeypatch
):
    _forbid_measuring(monkeypatch)
    monkeypatch.chdir(tmp_path)
    Path("results").write_text("")  # where results/ would go
    assert cli.main(["run", "loopback"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vdevperf: results/vdevperf-") and err.endswith(
        ": cannot create the result file: results is not a directory; name one with -o FILE\n"
    )


def test_a_command_that_fails_before_storing_a_run_leaves_no_file(tmp_path, capsys, monkeypatch):
    def fails(*args, **kwargs):
        raise VdevperfError("veth", "cannot build")

    monkeypatch.setattr(bench, "run", fails)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "loopback"]) == 2
    assert list((tmp_path / "results").iterdir()) == []


def _failing_in(monkeypatch, *directories: Path) -> None:
    """Writes into ``directories`` fail as on a full disk."""
    real = results.write_text_atomic

    def write(path: Path, text: str) -> None:
        if path.parent in directories:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, text)

    monkeypatch.setattr(results, "write_text_atomic", write)


def _no_fallback(directory: Path, stem: str, text: str, suffix: str = ".json") -> Path:
    raise OSError(errno.EIO, "Input/output error")


def test_a_failing_write_moves_the_results_to_the_temporary_directory(tmp_path, monkeypatch):
    full, spare = tmp_path / "full", tmp_path / "tmp"
    full.mkdir()
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    _failing_in(monkeypatch, full)
    notes: list[str] = []
    file = ResultFile(path=full / "r.json", command=["vdevperf"], notice=notes.append)
    file.add(_measured_run())
    assert notes == [
        f"{full / 'r.json'}: cannot write the results (No space left on device); they are in {spare / 'r.json'} instead"
    ]
    file.add(_measured_run())  # later writes go where the first one went, without another note
    assert file.path == spare / "r.json" and len(notes) == 1
    assert len(load(spare / "r.json")["runs"]) == 2 and not file.unwritten


def test_when_no_file_can_be_written_the_run_prints_its_document(tmp_path, capsys, monkeypatch):
    """The last resort, through the CLI: the document on stdout, where it went said on stderr."""
    full = tmp_path / "full"
    full.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "file" / "tmp"))
    (tmp_path / "file").write_text("")
    _failing_in(monkeypatch, full)

    def measured(spec, configs, file, options, plan):
        file.add(_measured_run())
        return file.runs

    monkeypatch.setattr(bench, "run", measured)
    assert cli.main(["run", "loopback", "-o", str(full / "r.json")]) == 0
    out, err = capsys.readouterr()
    assert err == (
        f"vdevperf: {full / 'r.json'}: cannot write the results (No space left on device), nor in "
        f"{tmp_path / 'file' / 'tmp'} (Not a directory); they will be printed "
        "on stdout\n"
    )
    document = json.loads(out.split("results (no file could be written):\n", 1)[1])
    assert len(document["runs"]) == 1 and document["runs"][0]["test"] == "TCP_STREAM"


def _nowhere_to_write(tmp_path, monkeypatch):
    """A directory where every write fails, $TMPDIR included, and no fallback file: stdout is all."""
    full = tmp_path / "full"
    full.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(full))
    _failing_in(monkeypatch, full)
    monkeypatch.setattr(results, "create_exclusive", _no_fallback)
    return full


def test_a_failed_command_still_prints_a_document_no_file_took(tmp_path, capsys, monkeypatch):
    full = _nowhere_to_write(tmp_path, monkeypatch)

    def measured_then_failed(spec, configs, file, options, plan):
        file.add(_measured_run())
        raise VdevperfError("loopback", "the second test failed")

    monkeypatch.setattr(bench, "run", measured_then_failed)
    assert cli.main(["run", "loopback", "-o", str(full / "r.json")]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["runs"][0]["topology"] == "veth"
    assert err.splitlines()[-1] == "vdevperf: loopback: the second test failed"


def test_monitor_prints_what_it_cannot_write(tmp_path, capsys, monkeypatch):
    full = _nowhere_to_write(tmp_path, monkeypatch)
    path = full / "m.csv"
    assert cli.main(["monitor", "--pid", str(os.getpid()), "-l", "0.2", "--interval", "0.1", "-o", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err.startswith(f"vdevperf: {path}: cannot write the results (No space left on device), nor in ")
    assert out.startswith("date,time,dt_s,") or "\ndate,time,dt_s," in out


def test_check_writable_is_a_result_error():
    with pytest.raises(ResultError):
        results.check_writable(Path("/dev/null"))


def test_monitor_moves_what_it_cannot_write_keeping_its_format(tmp_path, capsys, monkeypatch):
    full, spare = tmp_path / "full", tmp_path / "tmp"
    full.mkdir()
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    _failing_in(monkeypatch, full)
    path = full / "m.csv"
    assert cli.main(["monitor", "--pid", str(os.getpid()), "-l", "0.2", "--interval", "0.1", "-o", str(path)]) == 0
    assert capsys.readouterr().err == (
        f"vdevperf: {path}: cannot write the results (No space left on device); they are in {spare / 'm.csv'} instead\n"
    )
    assert (spare / "m.csv").read_text().startswith("date,time,dt_s,")
