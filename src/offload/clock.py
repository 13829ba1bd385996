"""Time in one place: aware UTC datetimes and epoch milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


def now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


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
