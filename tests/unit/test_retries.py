"""Retry policy: classification, full-jitter backoff and Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from offload.engine.attempts import (
    MAX_RETRY_AFTER,
    Outcome,
    backoff_delay,
    classify_status,
    next_retry_delay,
    parse_retry_after,
)

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SUCCESS),
        (201, Outcome.SUCCESS),
        (204, Outcome.SUCCESS),
        (299, Outcome.SUCCESS),
        (408, Outcome.RETRY),
        (409, Outcome.RETRY),
        (425, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (599, Outcome.RETRY),
        (400, Outcome.FAIL),
        (401, Outcome.FAIL),
        (404, Outcome.FAIL),
        (410, Outcome.FAIL),
        (422, Outcome.FAIL),
        (301, Outcome.FAIL),
        (302, Outcome.FAIL),
        (307, Outcome.FAIL),
        (100, Outcome.FAIL),
        (600, Outcome.FAIL),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def test_outcome_values_are_api_strings() -> None:
    assert [o.value for o in Outcome] == ["success", "retry", "fail"]


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 9, 10, 30, 1000])
def test_backoff__within_full_jitter_bounds(attempt: int) -> None:
    rng = random.Random(attempt)
    base, cap = timedelta(seconds=1), timedelta(minutes=10)
    ceiling = min(cap, base * 2 ** min(attempt, 20))
    samples = [backoff_delay(attempt, base=base, cap=cap, rng=rng) for _ in range(2000)]
    assert all(timedelta(0) <= s <= ceiling for s in samples)
    # Full jitter: uniform over [0, ceiling], so both ends of the range are visited.
    assert min(samples) < ceiling * 0.05
    assert max(samples) > ceiling * 0.95
    mean = sum(s.total_seconds() for s in samples) / len(samples)
    assert mean == pytest.approx(ceiling.total_seconds() / 2, rel=0.1)


def test_backoff__deterministic_with_seed() -> None:
    a = [backoff_delay(3, rng=random.Random(42)) for _ in range(3)]
    b = [backoff_delay(3, rng=random.Random(42)) for _ in range(3)]
    assert a == b


def test_backoff__negative_attempt_is_zero_and_zero_base() -> None:
    assert backoff_delay(-3, rng=random.Random(1)) <= timedelta(seconds=1)
    assert backoff_delay(4, base=timedelta(0)) == timedelta(0)


def test_backoff__huge_attempt_does_not_overflow() -> None:
    assert backoff_delay(10**9, rng=random.Random(1)) <= timedelta(minutes=10)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 5 ", timedelta(seconds=5)),
        ("0", timedelta(0)),
        ("1.5", timedelta(seconds=1.5)),
        ("-5", timedelta(0)),
        ("999999999", MAX_RETRY_AFTER),
        ("Sat, 01 Jun 2024 12:01:30 GMT", timedelta(seconds=90)),
        ("Saturday, 01-Jun-24 12:01:30 GMT", timedelta(seconds=90)),  # RFC 850
        ("Sat Jun  1 12:01:30 2024", timedelta(seconds=90)),  # asctime, taken as UTC
        ("Sat, 01 Jun 2024 11:00:00 GMT", timedelta(0)),  # past
        ("Wed, 01 Jan 2025 00:00:00 GMT", MAX_RETRY_AFTER),
    ],
)
def test_parse_retry_after(value: str, expected: timedelta) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize("value", [None, "", "soon", "1e3", "12s", "Sat, 99 Foo 2024", "0x10"])
def test_parse_retry_after__junk_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_next_retry_delay__retry_after_wins_exactly() -> None:
    d = next_retry_delay(attempt=0, retry_after=timedelta(seconds=42), rng=random.Random(0))
    assert d == timedelta(seconds=42)
    # Even when longer than the backoff cap.
    assert next_retry_delay(attempt=0, retry_after=timedelta(hours=2)) == timedelta(hours=2)
    assert next_retry_delay(attempt=0, retry_after=timedelta(days=9)) == MAX_RETRY_AFTER
    assert next_retry_delay(attempt=0, retry_after=timedelta(seconds=-1)) == timedelta(0)


def test_next_retry_delay__falls_back_to_backoff() -> None:
    d = next_retry_delay(attempt=2, retry_after=None, rng=random.Random(7))
    assert d == backoff_delay(2, rng=random.Random(7))
    capped = next_retry_delay(
        attempt=50, retry_after=None, base=timedelta(seconds=2), cap=timedelta(seconds=3)
    )
    assert capped <= timedelta(seconds=3)
