"""The busy-poll back-off: spin after every wake-up while spins catch something; after misses
in a row, skip exponentially more wake-ups, up to a cap; one catch restores spinning."""

from __future__ import annotations

from roost.tftp.transfer import BusyPoll


def spins_in(policy: BusyPoll, wakeups: int) -> int:
    return sum(policy.should_spin() for _ in range(wakeups))


def test_spins_on_every_wake_up_while_spins_catch_acks() -> None:
    policy = BusyPoll(50e-6)
    for _ in range(100):
        assert policy.should_spin()
        policy.ended(caught=True)
    assert policy.misses == 0 and policy.skip == 0


def test_misses_in_a_row_skip_exponentially_more_wake_ups() -> None:
    policy = BusyPoll(50e-6)
    skipped = []
    for _ in range(4):
        assert policy.should_spin()
        policy.ended(caught=False)
        skipped.append(policy.skip)
        assert spins_in(policy, policy.skip) == 0
    assert skipped == [1, 3, 7, 15]


def test_back_off_is_capped_so_spinning_is_tried_again() -> None:
    policy = BusyPoll(50e-6)
    for _ in range(20):
        policy.ended(caught=False)
    assert policy.skip == 63
    assert spins_in(policy, 64) == 1


def test_one_catch_restores_spinning_on_every_wake_up() -> None:
    policy = BusyPoll(50e-6)
    for _ in range(5):
        policy.ended(caught=False)
    spins_in(policy, policy.skip)
    assert policy.should_spin()
    policy.ended(caught=True)
    assert spins_in(policy, 10) == 10
