"""One attempt policy for both ways in (HTTP tasks and durable-function calls).

* :func:`classify_status`: what an HTTP answer of a task target means;
* :func:`next_retry_delay`: the server's ``Retry-After`` when it gave one (an HTTP
  header or the SDK's answer; cut to :data:`MAX_RETRY_AFTER`), otherwise backoff
  with full jitter — a uniform draw between zero and the exponential ceiling, which
  spreads retries of many failed runs evenly instead of in synchronised waves;
* :class:`RunError` (defined in :mod:`offload.models` so protocol and store code use it
  too): the error object stored on runs and steps and shown to SDKs;
* :func:`record_attempt` / :func:`record_retry`: the step, outbound and retry metrics
  of an attempt, the same series for both ways in.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from offload import metrics
from offload.models import RunError
from offload.protocol.opcodes import parse_retry_after as parse_retry_after_value

__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_CAP",
    "MAX_RETRY_AFTER",
    "Outcome",
    "RunError",
    "backoff_delay",
    "classify_status",
    "next_retry_delay",
    "parse_retry_after",
    "record_attempt",
    "record_retry",
]

DEFAULT_BASE = timedelta(seconds=1)
DEFAULT_CAP = timedelta(minutes=10)
MAX_RETRY_AFTER = timedelta(days=1)
"""A longer Retry-After is cut to this; a misbehaving server cannot park a run forever."""

_RETRY_STATUSES = frozenset({408, 409, 425, 429})
_rng = random.Random()


class Outcome(StrEnum):
    """What to do with an attempt's answer."""

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


def _clamp(retry_after: datetime | timedelta, now: datetime) -> timedelta:
    if isinstance(retry_after, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        retry_after = retry_after - now
    return min(max(retry_after, timedelta(0)), MAX_RETRY_AFTER)


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A ``Retry-After`` header as a delay from ``now``: delta-seconds, an HTTP-date or
    an ISO timestamp (:func:`offload.protocol.opcodes.parse_retry_after`, the one
    parser). Past dates and negative numbers give zero; values over
    :data:`MAX_RETRY_AFTER` are cut to it; anything unparseable gives None.
    """
    parsed = parse_retry_after_value(value)
    return None if parsed is None else _clamp(parsed, now)


def next_retry_delay(
    *,
    attempt: int,
    retry_after: datetime | timedelta | None,
    now: datetime | None = None,
    rng: random.Random | None = None,
    base: timedelta = DEFAULT_BASE,
    cap: timedelta = DEFAULT_CAP,
) -> timedelta:
    """The server's Retry-After when given (a delay or a time, counted from ``now``;
    clamped to [0, MAX_RETRY_AFTER]), otherwise :func:`backoff_delay`."""
    if retry_after is not None:
        return _clamp(retry_after, now or datetime.now(UTC))
    return backoff_delay(attempt, base=base, cap=cap, rng=rng)


def record_attempt(kind: str, *, outbound: str, outcome: Outcome, step_status: str | None,
                   seconds: float) -> None:
    """Metrics of one attempt: the outbound call (``outbound``: target, callback, app)
    and, when a step was recorded, its duration by step ``kind`` and status."""
    metrics.observe_outbound(outbound, outcome.value, seconds)
    if step_status is not None:
        metrics.observe_step(kind, step_status, seconds)


def record_retry(kind: str) -> None:
    """An attempt of ``kind`` (request, callback, step) failed and another is scheduled."""
    metrics.count_retry(kind)
