"""Retry policy: classify an HTTP answer, back off with full jitter, honour Retry-After.

Full jitter (a uniform draw between zero and the exponential ceiling) spreads
retries of many failed runs evenly instead of in synchronised waves.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_CAP",
    "MAX_RETRY_AFTER",
    "Outcome",
    "backoff_delay",
    "classify_status",
    "next_retry_delay",
    "parse_retry_after",
]

DEFAULT_BASE = timedelta(seconds=1)
DEFAULT_CAP = timedelta(minutes=10)
MAX_RETRY_AFTER = timedelta(days=1)
"""A longer Retry-After is cut to this; a misbehaving server cannot park a run forever."""

_RETRY_STATUSES = frozenset({408, 409, 425, 429})
_DELTA_SECONDS = re.compile(r"[+-]?\d+(\.\d+)?")
_rng = random.Random()


class Outcome(StrEnum):
    """What to do with an attempt's HTTP answer."""

    SUCCESS = "success"
    RETRY = "retry"
    FAIL = "fail"


def classify_status(status: int) -> Outcome:
    """2xx succeed; 408, 409, 425, 429 and 5xx retry; everything else fails.

    3xx fail because redirects that were not followed are not a delivery.
    """
    if 200 <= status <= 299:
        return Outcome.SUCCESS
    if status in _RETRY_STATUSES or 500 <= status <= 599:
        return Outcome.RETRY
    return Outcome.FAIL


def backoff_delay(
    attempt: int,
    *,
    base: timedelta = DEFAULT_BASE,
    cap: timedelta = DEFAULT_CAP,
    rng: random.Random | None = None,
) -> timedelta:
    """Delay before the next try: ``uniform(0, min(cap, base * 2**attempt))``.

    ``attempt`` counts failures so far, from zero; negative counts as zero.
    """
    exponent = min(max(attempt, 0), 64)  # beyond 2**64 the cap always wins
    ceiling = min(cap.total_seconds(), base.total_seconds() * (2.0**exponent))
    ceiling = max(ceiling, 0.0)
    return timedelta(seconds=(rng or _rng).uniform(0.0, ceiling))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP-date.

    Past dates and negative numbers give zero; values over :data:`MAX_RETRY_AFTER`
    are cut to it; anything unparseable gives None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
        delay = timedelta(seconds=min(max(seconds, 0.0), MAX_RETRY_AFTER.total_seconds()))
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # "-0000" means UTC per RFC 5322
            when = when.replace(tzinfo=UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        delay = when - now
    return min(max(delay, timedelta(0)), MAX_RETRY_AFTER)


def next_retry_delay(
    *,
    attempt: int,
    retry_after: timedelta | None,
    rng: random.Random | None = None,
    base: timedelta = DEFAULT_BASE,
    cap: timedelta = DEFAULT_CAP,
) -> timedelta:
    """The server's Retry-After when given (clamped to [0, MAX_RETRY_AFTER]),
    otherwise :func:`backoff_delay`."""
    if retry_after is not None:
        return min(max(retry_after, timedelta(0)), MAX_RETRY_AFTER)
    return backoff_delay(attempt, base=base, cap=cap, rng=rng)
