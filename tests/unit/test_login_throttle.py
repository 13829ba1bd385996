"""LoginThrottle: per-key exponential delay, a global ceiling, known devices exempt."""

from __future__ import annotations

from offload.security import login_throttle as lt
from offload.security.login_throttle import LoginThrottle, delay_after


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_delay_doubles_after_the_free_failures_and_is_capped() -> None:
    assert [delay_after(f) for f in range(8)] == [0, 0, 0, 1, 2, 4, 8, 16]
    assert delay_after(100) == lt.MAX_DELAY_S


def test_per_key_wait_and_reset() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(3):
        assert throttle.wait("addr:a") == 0
        throttle.failed("addr:a")
    assert throttle.wait("addr:a") == 1.0
    assert throttle.wait("addr:b") == 0  # another address is not affected
    clock.t += 1.0
    assert throttle.wait("addr:a") == 0
    throttle.failed("addr:a")
    assert throttle.wait("addr:a") == 2.0
    throttle.succeeded("addr:a")
    assert throttle.wait("addr:a") == 0


def test_failures_are_forgotten_after_a_quiet_period() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(10):
        throttle.failed("addr:a")
    assert throttle.wait("addr:a") > 0
    clock.t += lt.FORGET_AFTER_S + 1
    assert throttle.wait("addr:a") == 0


def test_global_ceiling_spaces_unknown_browsers_but_not_known_devices() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for i in range(lt.GLOBAL_FAILURES):  # a distributed attack: one failure per address
        assert throttle.wait(f"addr:{i}") == 0
        throttle.failed(f"addr:{i}")
    assert throttle.wait("addr:new") == 0  # takes the next global slot
    assert throttle.wait("addr:other") == lt.GLOBAL_SPACING_S
    assert throttle.wait("device:d1", known_device=True) == 0  # the real user gets in
    clock.t += lt.GLOBAL_WINDOW_S + 1
    assert throttle.wait("addr:other") == 0  # the window passed
