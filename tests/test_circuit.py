"""The circuit breaker on its own clock: opens after `threshold` failures in
a row, waits `open_seconds`, then lets one probe decide."""

from imagejobs.circuit import CircuitBreaker
from imagejobs.models import Circuit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(threshold=3, open_seconds=60, clock=clock)


def test_it_opens_only_after_threshold_failures_in_a_row():
    breaker = _breaker(Clock())
    assert breaker.record_failure() is False
    assert breaker.record_failure() is False
    assert breaker.record_success() is False, "still closed: nothing changed"
    assert [breaker.record_failure() for _ in range(3)] == [False, False, True]
    assert breaker.is_open
    assert breaker.failures == 3


def test_while_open_it_waits_its_window_before_one_probe():
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    assert breaker.seconds_until_probe() == 60
    clock.now += 59.5
    assert breaker.ready_to_probe() is False
    assert breaker.seconds_until_probe() == 0.5
    clock.now += 0.5
    assert breaker.ready_to_probe() is True
    assert breaker.state == Circuit.HALF_OPEN
    assert breaker.seconds_until_probe() == 0


def test_a_failed_probe_reopens_for_a_whole_window_and_a_good_one_closes():
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 60
    assert breaker.ready_to_probe()
    assert breaker.record_failure() is True, "one failed probe is enough"
    assert breaker.seconds_until_probe() == 60
    clock.now += 60
    assert breaker.ready_to_probe()
    assert breaker.record_success() is True
    assert breaker.state == Circuit.CLOSED
    assert breaker.failures == 0
