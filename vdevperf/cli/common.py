"""What every command shares: the parser class, notes on stderr, the progress line, the result file of a
measuring command and how it is printed, supervising a child, and ``dispatch``: the exit codes and signal
handling described in ``vdevperf.cli``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TypeAlias

from vdevperf import bench
from vdevperf.errors import Interrupted, VdevperfError
from vdevperf.model import TestConfig
from vdevperf.results import DEFAULT_RESULTS_DIR, ResultFile, check_writable
from vdevperf.scale.document import ScaleFile

EXIT_ERROR = 2
EXIT_REGRESSION = 1

Command = Callable[[argparse.Namespace, Sequence[str]], int]
# What each command family adds its parsers to (a string: argparse's class is not subscriptable at run time).
Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"


class Parser(argparse.ArgumentParser):
    """argparse that reports bad flags in vdevperf's one-line form with exit 2."""

    def error(self, message: str) -> NoReturn:
        raise VdevperfError("usage", message)


def note(line: str) -> None:
    """A one-line note on stderr that does not stop the command (a skipped file, results written elsewhere)."""
    print(f"vdevperf: {line}", file=sys.stderr, flush=True)


def print_document(results: ResultFile | ScaleFile) -> None:
    """The result document as JSON on stdout."""
    json.dump(results.document(), sys.stdout, indent=1)
    print(flush=True)


@contextlib.contextmanager
def stored(output: Path | None, argv: Sequence[str], resumed: ResultFile | None = None) -> Iterator[ResultFile]:
    """The result file of a measuring command, claimed before anything is built: an unwritable -o is one
    line and nothing is measured. Should the command fail, a file it created and never stored a run in
    is removed, and a document no file could take is printed: no measurement is lost."""
    results = resumed or ResultFile(path=None, command=["vdevperf", *argv])
    results.notice = note
    if resumed is None:
        results.claim(output, DEFAULT_RESULTS_DIR)
    elif results.path is not None:
        check_writable(results.path)
    try:
        yield results
    except BaseException:
        results.release()
        if results.unwritten and results.runs:
            print_document(results)
        raise


class Progress:
    """One status line on a terminal: which run of how many, elapsed and estimated time left."""

    def __init__(self, runs: int, configs: Sequence[TestConfig]) -> None:
        self.runs = runs
        self.started = time.monotonic()
        self.count = 0
        # Before anything finished, guess from the configured times (+2 s to build and start).
        self.guess_s = statistics.fmean(c.iterations_max * (c.warmup_s + c.duration_s) + 2 for c in configs)

    def __call__(self, step: bench.Step) -> None:
        elapsed = time.monotonic() - self.started
        if step.new_run:
            self.count += 1
        per_run = elapsed / (self.count - 1) if self.count > 1 else self.guess_s
        left = max(per_run * (self.runs - self.count + 1) - (elapsed - per_run * (self.count - 1)), 0)
        line = f"[{self.count}/{self.runs}] {step.label}  elapsed {_clock(elapsed)}, about {_clock(left)} left"
        print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Erase the line."""
        print("\r\033[K", end="", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


@contextlib.contextmanager
def progress_line(quiet: bool, runs: int, configs: Sequence[TestConfig]) -> Iterator[Callable[[bench.Step], None]]:
    """Where progress goes: a Progress line on a terminal, unless ``quiet``; erased at the end."""
    progress = None if quiet or not sys.stderr.isatty() else Progress(runs, configs)
    try:
        yield progress or (lambda step: None)
    finally:
        if progress is not None:
            progress.close()


@contextlib.contextmanager
def supervised(command: Sequence[str]) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` started as our child, and stopped by its pid (then reaped) if still running at the end."""
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        raise VdevperfError(f"command {command[0]}", exc.strerror or str(exc)) from None
    try:
        yield child
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def dispatch(build: Callable[[], argparse.ArgumentParser], commands: dict[str, Command], argv: Sequence[str]) -> int:
    """Parse ``argv`` and run its command, with vdevperf's exit codes: one line and 2 for an expected
    failure; on SIGINT/SIGTERM, after the teardown in the commands' finally blocks, death by that signal."""
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = build().parse_args(argv)
        return commands[args.command](args, argv)
    except VdevperfError as exc:
        print(f"vdevperf: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader of our output left (``vdevperf monitor ... | head``); teardown already ran. Point
        # stdout at /dev/null so that the interpreter's last flush cannot fail again, and end the way
        # a shell tool does when its pipe closes: status 128 + SIGPIPE, no traceback, no message.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Interrupted as exc:
        # Teardown already ran in the finally blocks; now die the way we were asked to.
        print(f"vdevperf: interrupted by {signal.Signals(exc.signum).name}", file=sys.stderr)
        sys.stdout.flush()
        signal.signal(exc.signum, signal.SIG_DFL)
        os.kill(os.getpid(), exc.signum)
        return 128 + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
