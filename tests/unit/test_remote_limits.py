"""The rules a vdevperf server applies to strangers and sessions, without a network (no root needed)."""

from __future__ import annotations

import pytest

from vdevperf.remote.limits import AuthBackoff, EndpointBudget, HandshakeSlots, Tally, address_key


@pytest.mark.parametrize(
    "address, key",
    [
        ("198.18.0.3", "198.18.0.3"),
        ("::ffff:198.18.0.3", "198.18.0.3"),  # a dual-stack listener's view of IPv4
        ("2001:2::1", "2001:2::/64"),
        ("2001:2::ffff:1234", "2001:2::/64"),  # one host's /64: one key
        ("2001:2:0:1::1", "2001:2:0:1::/64"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_strangers_are_counted_per_ipv4_address_or_ipv6_64(address, key):
    assert address_key(address) == key


def test_a_full_address_gives_its_oldest_slot_to_the_newcomer():
    slots: HandshakeSlots[str] = HandshakeSlots(total=6, per_address=2)
    assert slots.take("a1", "A") == [] and slots.take("b1", "B") == [] and slots.take("a2", "A") == []
    assert slots.take("a3", "A") == ["a1"]  # A's oldest, not B's older one
    assert slots.take("a4", "A") == ["a2"]
    assert len(slots) == 3
    assert not slots.leave("a1")  # displaced: it has no slot to leave
    assert slots.leave("b1") and not slots.leave("b1")


def test_a_full_server_gives_the_oldest_slot_of_all_to_the_newcomer():
    slots: HandshakeSlots[str] = HandshakeSlots(total=3, per_address=2)
    for item, key in (("a1", "A"), ("b1", "B"), ("c1", "C")):
        assert slots.take(item, key) == []
    assert slots.take("d1", "D") == ["a1"]
    assert slots.take("d2", "D") == ["b1"]
    # D is at its cap and the server is full: D's own oldest goes, and nobody else.
    assert slots.take("d3", "D") == ["d1"]
    assert len(slots) == 3


def test_a_flood_from_one_address_never_displaces_another_address():
    slots: HandshakeSlots[int] = HandshakeSlots(total=64, per_address=8)
    assert slots.take(-1, "client") == []
    for i in range(10_000):
        assert -1 not in slots.take(i, "flood")
    assert len(slots) == 9 and slots.leave(-1)


def test_backoff_doubles_per_failure_up_to_64_times_and_ends_on_success():
    backoff = AuthBackoff(1.0)
    assert backoff.remaining("A", 0.0) == 0
    assert backoff.failed("A", 0.0) == 1.0
    assert backoff.remaining("A", 0.5) == 0.5 and backoff.remaining("B", 0.5) == 0
    assert [backoff.failed("A", t) for t in (1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 127.0, 191.0)] == [
        2.0,
        4.0,
        8.0,
        16.0,
        32.0,
        64.0,
        64.0,
        64.0,
    ]
    backoff.succeeded("A")
    assert backoff.remaining("A", 192.0) == 0 and backoff.failed("A", 192.0) == 1.0


def test_backoff_forgets_an_address_quiet_for_the_longest_backoff():
    backoff = AuthBackoff(0.5)
    assert backoff.failed("A", 0.0) == 0.5 and backoff.failed("A", 1.0) == 1.0
    assert backoff.failed("A", 2.0 + 32.0 + 0.1) == 0.5  # quiet past until + 64 * 0.5


def test_backoff_zero_never_backs_off_and_its_memory_is_bounded():
    off = AuthBackoff(0.0)
    assert off.failed("A", 0.0) == 0 and off.remaining("A", 0.0) == 0
    backoff = AuthBackoff(1.0, entries=3)
    for i in range(100):
        backoff.failed(f"addr{i}", float(i))
    assert len(backoff._strikes) == 3
    assert backoff.remaining("addr99", 99.0) == 1.0  # the newest are the ones kept


def test_the_endpoint_budget_is_all_or_nothing():
    budget = EndpointBudget(4)
    assert budget.claim(3) and not budget.claim(2) and budget.used == 3
    assert budget.claim(1) and not budget.claim(1)
    budget.release(3)
    assert budget.claim(2) and budget.used == 3


def test_a_tally_reports_a_flood_once_a_second_with_its_count():
    tally = Tally(every_s=1.0)
    assert tally.add(0.0) == 1
    assert [tally.add(t) for t in (0.1, 0.2, 0.9)] == [0, 0, 0]
    assert tally.add(1.0) == 4 and tally.add(1.5) == 0 and tally.add(2.5) == 2
