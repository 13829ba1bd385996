"""Time strings (offload.protocol.durations)."""

from __future__ import annotations

import datetime as dt

import pytest

from offload.errors import ValidationError
from offload.protocol.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("300ms", dt.timedelta(milliseconds=300)),
        ("2h45m", dt.timedelta(hours=2, minutes=45)),
        ("1.5s", dt.timedelta(seconds=1.5)),
        ("1d", dt.timedelta(days=1)),
        ("1w", dt.timedelta(weeks=1)),
        (
            "1w2d3h4m5s6ms7us",
            dt.timedelta(
                weeks=1, days=2, hours=3, minutes=4, seconds=5, milliseconds=6, microseconds=7
            ),
        ),
        ("1500ns", dt.timedelta(microseconds=1)),
        ("10µs", dt.timedelta(microseconds=10)),
        (".5m", dt.timedelta(seconds=30)),
        ("0", dt.timedelta(0)),
        ("0s", dt.timedelta(0)),
        (" 5s ", dt.timedelta(seconds=5)),
        ("1m1m", dt.timedelta(minutes=2)),
    ],
)
def test_parse_duration_accepts_time_strings(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "   ", "-5s", "5", "s", "5 s", "5x", "1.2.3s", "5sm", "abc", "1h-5m", "5S", "1e3s"]
)
def test_parse_duration_rejects_junk(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_duration(text)
    assert exc.value.field == "duration"


def test_parse_duration_rejects_non_string() -> None:
    with pytest.raises(ValidationError):
        parse_duration(5)  # type: ignore[arg-type]


def test_parse_duration_overflow_is_validation_error() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_duration("99999999999999w")
    assert exc.value.code == "too_large"


@pytest.mark.parametrize(
    "value",
    [
        dt.timedelta(0),
        dt.timedelta(seconds=1),
        dt.timedelta(hours=26, milliseconds=5),
        dt.timedelta(weeks=3, microseconds=1),
    ],
)
def test_format_duration_round_trips(value: dt.timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


def test_format_duration_examples() -> None:
    assert format_duration(dt.timedelta(minutes=1)) == "1m"
    assert format_duration(dt.timedelta(hours=2, minutes=45)) == "2h45m"
    with pytest.raises(ValidationError):
        format_duration(dt.timedelta(seconds=-1))
