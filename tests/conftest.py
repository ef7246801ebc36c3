"""Shared fixtures: root-only tests under tests/netns, and a leak check over the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vdevperf.topology import netns
from vdevperf.topology.ledger import LEDGER_DIR, list_ledgers, read_ledger
from vdevperf.topology.naming import parse_netns_name
from vdevperf.topology.probe import has_privileges

NETNS_TESTS = Path(__file__).parent / "netns"
ROOT_REASON = "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create namespaces and devices"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/netns as `netns`, and skip those when not privileged."""
    privileged = has_privileges()
    for item in items:
        if NETNS_TESTS in Path(item.path).parents:
            item.add_marker(pytest.mark.netns)
            if not privileged:
                item.add_marker(pytest.mark.skip(reason=ROOT_REASON))


def _ledger_owners() -> dict[str, int]:
    owners = {}
    for path in list_ledgers(LEDGER_DIR):
        try:
            owners[path.stem] = read_ledger(path).owner.pid
        except (OSError, ValueError):
            owners[path.stem] = -1
    return owners


def leaked_by(pid: int, before: set[str]) -> list[str]:
    """Namespaces and ledgers of ours that appeared since ``before`` and belong to ``pid`` (or to no ledger)."""
    owners = _ledger_owners()
    leaked = [
        f"{LEDGER_DIR}/{rid}.json"
        for rid, owner in owners.items()
        if owner in (pid, -1) and f"ledger:{rid}" not in before
    ]
    for name in netns.list_ours():
        parsed = parse_netns_name(name)
        rid = parsed[0] if parsed else None
        # A namespace of a concurrent vdevperf run has a ledger owned by that run: not ours.
        if name not in before and owners.get(rid, pid) == pid:
            leaked.append(f"{netns.NETNS_DIR}/{name}")
    return leaked


def snapshot() -> set[str]:
    """Our namespaces and ledgers present now."""
    return set(netns.list_ours()) | {f"ledger:{p.stem}" for p in list_ledgers(LEDGER_DIR)}


@pytest.fixture(autouse=True)
def no_leaks_per_test():
    """Each test ends with a leak check: nothing of ours it created may remain."""
    before = snapshot()
    yield
    leaked = leaked_by(os.getpid(), before)
    assert not leaked, f"left behind: {', '.join(leaked)}"


@pytest.fixture(scope="session", autouse=True)
def no_leaks_at_session_end():
    """Fail the session if a namespace or ledger of ours created by this process is left over."""
    before = snapshot()
    yield
    leaked = leaked_by(os.getpid(), before)
    assert not leaked, f"left behind: {', '.join(leaked)}"
