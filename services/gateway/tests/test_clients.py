"""The public routes' per-client limiter as a unit, on a clock the test moves (the gateway's own test,
test_public_limits.py, runs it in the real process)."""

from __future__ import annotations

from opendrec_gateway.clients import PublicLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_past_the_limit_waits_until_its_oldest_call_leaves_the_window():
    clock = Clock()
    limiter = PublicLimiter("3/minute", clock)
    for _ in range(3):
        assert limiter.allow("203.0.113.1") is None
        clock.now += 10  # calls at 0, 10 and 20 s
    assert limiter.allow("203.0.113.1") == 30  # at 30 s: the call at 0 leaves at 60
    assert limiter.allow("203.0.113.2") is None  # another client has its own window
    clock.now += 29.5
    assert limiter.allow("203.0.113.1") == 1
    clock.now += 0.5  # 60 s: the first call left; the refused ones never counted
    assert limiter.allow("203.0.113.1") is None
    assert limiter.allow("203.0.113.1") == 10  # the call at 10 s leaves at 70


def test_no_more_than_the_amount_in_any_span_of_the_window():
    clock = Clock()
    limiter = PublicLimiter("10/minute", clock)
    allowed = []
    for _ in range(600):  # a call every 0.5 s for 5 minutes
        if limiter.allow("c") is None:
            allowed.append(clock.now)
        clock.now += 0.5
    assert len(allowed) == 50  # 10 a minute
    assert all(later - earlier >= 60 for earlier, later in zip(allowed, allowed[10:], strict=False))


def test_every_limit_holds_and_a_call_one_refuses_counts_in_none():
    clock = Clock()
    limiter = PublicLimiter("2/second;3/minute", clock)
    assert [limiter.allow("c") for _ in range(2)] == [None, None]
    assert limiter.allow("c") == 1  # the second's limit
    clock.now += 1.5
    assert limiter.allow("c") is None  # the third of the minute (the refused call was not counted)
    clock.now += 1.5
    assert limiter.allow("c") == 57  # the minute's limit: the first calls leave it at 60 s


def test_clients_whose_calls_left_every_window_are_forgotten():
    clock = Clock()
    limiter = PublicLimiter("5/second;100/minute", clock)
    for n in range(1000):
        assert limiter.allow(f"198.51.100.{n}") is None
    clock.now += 30
    assert limiter.allow("192.0.2.1") is None  # their calls are still within the minute: kept
    assert len(limiter) == 1001
    clock.now += 30.5
    assert limiter.allow("192.0.2.2") is None
    assert len(limiter) == 2  # the newcomers; the thousand left every window


def test_no_limits_allow_everything():
    limiter = PublicLimiter("")
    assert all(limiter.allow("c") is None for _ in range(1000))
    assert len(limiter) == 0
