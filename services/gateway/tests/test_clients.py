"""The public routes' per-client limiter as a unit, on a clock the test moves (the gateway's own test,
test_public_limits.py, runs it in the real process)."""

from __future__ import annotations

from opendrec_gateway.clients import PublicLimiter


class Clock:
    def __init__(self, now: float = 6000.0) -> None:  # a whole number of minutes: windows start here
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_client_past_the_limit_waits_and_its_refused_calls_do_not_count():
    clock = Clock()
    limiter = PublicLimiter("3/minute", clock)
    assert [limiter.allow("203.0.113.1") for _ in range(3)] == [None, None, None]
    clock.now += 10
    # 50 s until this window ends; in the next one the 3 weigh 3 * (1 - t/60), and 3 * (1 - t/60) + 1 <= 3 at t = 20
    assert limiter.allow("203.0.113.1") == 70
    assert limiter.allow("203.0.113.2") is None  # another client has its own count
    clock.now += 49
    assert limiter.allow("203.0.113.1") == 21
    clock.now += 21  # 20 s into the next window: the previous 3 weigh 3 * 2/3 = 2, room for one more
    assert limiter.allow("203.0.113.1") is None
    assert limiter.allow("203.0.113.1") == 20  # 3 * (1 - t/60) + 1 + 1 <= 3 once t >= 40


def test_the_previous_window_weighs_by_its_overlap_with_the_last_period():
    clock = Clock()
    limiter = PublicLimiter("10/minute", clock)
    assert all(limiter.allow("c") is None for _ in range(10))
    clock.now += 90  # half into the next window: the 10 weigh 5
    assert all(limiter.allow("c") is None for _ in range(5))
    assert limiter.allow("c") == 6  # 10 * (1 - t/60) + 5 + 1 <= 10 once t >= 36
    clock.now += 6
    assert limiter.allow("c") is None
    clock.now += 120  # two windows on: nothing weighs
    assert all(limiter.allow("c") is None for _ in range(10))
    assert limiter.allow("c") is not None


def test_every_limit_holds_and_a_call_one_refuses_counts_in_none():
    clock = Clock()
    limiter = PublicLimiter("2/second;3/minute", clock)
    assert [limiter.allow("c") for _ in range(2)] == [None, None]
    assert limiter.allow("c") == 2  # the second's limit: 1 s to its end, then 2 * (1 - t) + 1 <= 2 at t = 0.5
    clock.now += 1.5
    assert limiter.allow("c") is None  # the third of the minute (the refused call was not counted)
    clock.now += 1.5
    assert limiter.allow("c") == 77  # the minute's: 57 s to its end, then 3 * (1 - t/60) + 1 <= 3 at t = 20


def test_clients_whose_windows_passed_are_forgotten():
    clock = Clock()
    limiter = PublicLimiter("5/second;100/minute", clock)
    for n in range(1000):
        assert limiter.allow(f"198.51.100.{n}") is None
    assert len(limiter) == 1000
    clock.now += 60.5
    assert limiter.allow("198.51.100.1") is None  # the previous minute still weighs: kept
    assert len(limiter) == 1000
    clock.now += 60
    limiter.allow("192.0.2.1")  # two minutes on: only the newcomer and the one seen a minute ago remain
    assert len(limiter) == 2


def test_no_limits_allow_everything():
    limiter = PublicLimiter("")
    assert all(limiter.allow("c") is None for _ in range(1000))
    assert len(limiter) == 0
