"""Descriptors of forked endpoints: each keeps only its own, and a start that fails leaks none (no root)."""

from __future__ import annotations

import os
import resource
import socket
import time

import pytest

from vdevperf.errors import LoadError
from vdevperf.load import endpoint
from vdevperf.load.endpoint import Channel


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def _links() -> dict[int, str]:
    links = {}
    for fd in _open_fds():
        try:
            links[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the listing's own descriptor, closed by now
            pass
    return links


def _report_fds(channel: Channel) -> None:
    channel.send({"links": {fd: link for fd, link in _links().items() if fd > 2}})


def test_an_endpoint_keeps_its_pipes_and_the_descriptors_it_names_only():
    others = [socket.socket() for _ in range(3)]  # another session's sockets, say
    mine = socket.socket()
    try:
        ep = endpoint.start("server", None, None, _report_fds, keep_fds=(mine.fileno(),))
        try:
            report = ep.receive(time.monotonic() + 10)
        finally:
            ep.close()
    finally:
        for sock in [*others, mine]:
            sock.close()
    kinds = sorted(link.split(":")[0] for link in report["links"].values())
    assert kinds == ["pipe", "pipe", "socket"], report
    assert mine.fileno() == -1 and all(s.fileno() == -1 for s in others)  # closed here; the child had its own


def test_a_start_that_fails_leaks_no_pipe():
    before = _open_fds()
    # Leave three descriptor numbers free: one pipe opens, the second cannot.
    probe = [os.dup(0) for _ in range(3)]
    for fd in probe:
        os.close(fd)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(probe) + 1, hard))
    try:
        with pytest.raises(LoadError, match="server endpoint: cannot start it: Too many open files"):
            endpoint.start("server", None, None, _report_fds)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert _open_fds() == before
