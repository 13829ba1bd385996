"""Time in one place: aware UTC datetimes and epoch milliseconds.

Every module asks :func:`now` (or :func:`now_ms`), which reads the installed
:class:`Clock`: the system clock in production, a :class:`FakeClock` in tests that
drive the engine in-process (``with clock.use(FakeClock(...)):``), so timeouts,
backoffs and sleeps are crossed by ``advance()`` instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        """The fake current time."""
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (a timedelta or seconds); the new time."""
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._now


SYSTEM = SystemClock()
_current: Clock = SYSTEM


@contextmanager
def use(clock: Clock) -> Iterator[Clock]:
    """Install ``clock`` for :func:`now` and :func:`now_ms` until the block ends."""
    global _current
    previous, _current = _current, clock
    try:
        yield clock
    finally:
        _current = previous


def now() -> datetime:
    """The current time as an aware UTC datetime."""
    return _current.now()


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    if _current is SYSTEM:
        return time.time_ns() // 1_000_000  # the hot path: no datetime built
    return to_ms(_current.now())


def to_ms(value: datetime) -> int:
    """An aware datetime as epoch milliseconds."""
    return int(value.timestamp() * 1000)


def from_ms(value: int | None) -> datetime | None:
    """Epoch milliseconds as an aware UTC datetime (None stays None)."""
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def ms(delta: timedelta) -> int:
    """A duration in whole milliseconds."""
    return int(delta.total_seconds() * 1000)
