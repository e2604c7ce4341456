"""AdaptiveRate: a token bucket at the batch's share of MaxSendRate that backs off on throttles.

Driven by a fake clock: every figure here is exact, none depends on how fast the machine is.
"""

from __future__ import annotations

import pytest

from sendmail.sending.pacing import (
    BURST_CALLS,
    DECREASE_COOLDOWN_SECONDS,
    DECREASE_FACTOR,
    FLOOR_FRACTION,
    MIN_RATE,
    RECOVERY_SECONDS,
    AdaptiveRate,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def send_for(limiter: AdaptiveRate, clock: Clock, seconds: float) -> int:
    """Calls made in ``seconds`` by a caller that waits as told; returns how many."""
    end = clock.now + seconds
    calls = 0
    while True:
        wait = limiter.reserve()
        if clock.now + wait > end:
            return calls
        clock.now += wait
        calls += 1


def test_calls_are_spaced_at_the_rate_after_a_small_burst() -> None:
    clock = Clock()
    limiter = AdaptiveRate(10.0, clock=clock)

    waits = [limiter.reserve() for _ in range(5)]

    # the first BURST_CALLS go at once, then one every 0.1 s (nobody actually waited here)
    assert waits[:BURST_CALLS] == [0.0] * BURST_CALLS
    assert waits[BURST_CALLS:] == pytest.approx([0.1 * n for n in range(1, 5 - BURST_CALLS + 1)])


def test_over_ten_seconds_a_waiting_caller_gets_the_rate_and_no_more() -> None:
    clock = Clock()
    limiter = AdaptiveRate(25.0, clock=clock)
    calls = send_for(limiter, clock, 10.0)
    assert 25 * 10 <= calls <= 25 * 10 + BURST_CALLS


def test_a_late_caller_catches_up_by_the_burst_only() -> None:
    clock = Clock()
    limiter = AdaptiveRate(10.0, clock=clock)
    limiter.reserve()
    clock.now += 5.0  # idle for 5 s: 50 slots went by, only BURST_CALLS can be used at once
    waits = [limiter.reserve() for _ in range(BURST_CALLS + 1)]
    assert waits[:BURST_CALLS] == [0.0] * BURST_CALLS
    assert waits[BURST_CALLS] > 0


def test_without_a_rate_nothing_waits() -> None:
    limiter = AdaptiveRate(None, clock=Clock())
    assert [limiter.reserve() for _ in range(100)] == [0.0] * 100
    limiter.on_throttle()
    limiter.on_success()
    assert limiter.rate is None


def test_a_throttle_cuts_the_rate_once_per_cooldown() -> None:
    clock = Clock()
    limiter = AdaptiveRate(100.0, clock=clock)

    for _ in range(20):  # a burst of 429s for calls that were all in flight together
        limiter.on_throttle()

    assert limiter.rate == pytest.approx(100.0 * DECREASE_FACTOR)
    assert (limiter.throttles, limiter.decreases) == (20, 1)
    clock.now += DECREASE_COOLDOWN_SECONDS
    limiter.on_throttle()
    # one cooldown of growth (the ceiling / RECOVERY_SECONDS per second), then the cut
    grown = 100.0 * DECREASE_FACTOR + 100.0 * DECREASE_COOLDOWN_SECONDS / RECOVERY_SECONDS
    assert limiter.rate == pytest.approx(grown * DECREASE_FACTOR)
    assert limiter.decreases == 2


def test_the_rate_recovers_linearly_and_never_passes_the_ceiling() -> None:
    clock = Clock()
    limiter = AdaptiveRate(100.0, clock=clock)
    limiter.on_throttle()  # 70
    clock.now += 1.0
    limiter.on_success()
    assert limiter.rate == pytest.approx(70.0 + 100.0 / RECOVERY_SECONDS)
    clock.now += 1.5
    limiter.on_success()
    assert limiter.rate == pytest.approx(70.0 + 2.5 * 100.0 / RECOVERY_SECONDS)
    clock.now += 60.0
    limiter.on_success()
    assert limiter.rate == pytest.approx(100.0)


def test_the_rate_never_drops_below_its_floor() -> None:
    clock = Clock()
    limiter = AdaptiveRate(100.0, start=100.0 * FLOOR_FRACTION, clock=clock)
    limiter.on_throttle()  # at the floor already, with no time to grow: it stays there
    assert limiter.decreases == 1
    assert limiter.rate == pytest.approx(100.0 * FLOOR_FRACTION)
    tiny = AdaptiveRate(1.0, start=0.0001, clock=clock)
    assert tiny.rate == pytest.approx(MIN_RATE)


def test_a_start_rate_is_kept_within_floor_and_ceiling() -> None:
    clock = Clock()
    assert AdaptiveRate(50.0, start=20.0, clock=clock).rate == 20.0
    assert AdaptiveRate(50.0, start=500.0, clock=clock).rate == 50.0
    assert AdaptiveRate(50.0, start=0.001, clock=clock).rate == pytest.approx(50 * FLOOR_FRACTION)


def test_under_a_storm_that_is_not_about_the_rate_the_pace_settles_near_a_third() -> None:
    """30% of calls refused whatever the pace: slower, but it neither collapses nor races."""
    clock = Clock()
    limiter = AdaptiveRate(100.0, clock=clock)
    calls = 0
    rates = []
    while clock.now < 1000.0 + 120:
        clock.now += limiter.reserve()
        calls += 1
        if calls % 10 < 3:
            limiter.on_throttle()
        else:
            limiter.on_success()
        rates.append(limiter.rate or 0.0)
    settled = rates[len(rates) // 2 :]
    average = sum(settled) / len(settled)
    assert 100 / 5 < average < 100 / 2


def test_at_a_steady_rate_without_throttles_it_stays_at_the_ceiling() -> None:
    clock = Clock()
    limiter = AdaptiveRate(40.0, clock=clock)
    for _ in range(400):
        clock.now += limiter.reserve()
        limiter.on_success()
    assert limiter.rate == 40.0
    assert limiter.decreases == 0
