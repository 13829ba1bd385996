"""Cron parsing, time zones, daylight saving, catch-up and jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from offload.engine.cron import CronSchedule, jitter_for, next_tick, parse_cron, ticks_between
from offload.errors import CronError


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type,misc]


def test_parse__plain_five_fields_default_utc() -> None:
    s = parse_cron("*/5  *  * * *")
    assert s == CronSchedule(expression="*/5 * * * *", tz=ZoneInfo("UTC"), jitter=timedelta(0))


@pytest.mark.parametrize("prefix", ["TZ", "CRON_TZ"])
def test_parse__tz_prefix(prefix: str) -> None:
    s = parse_cron(f"{prefix}=Europe/Paris 0 9 * * 1-5")
    assert s.tz == ZoneInfo("Europe/Paris")
    assert s.expression == "0 9 * * 1-5"


@pytest.mark.parametrize(
    ("descriptor", "after", "expected"),
    [
        ("@yearly", utc(2024, 3, 5), utc(2025, 1, 1)),
        ("@annually", utc(2024, 3, 5), utc(2025, 1, 1)),
        ("@monthly", utc(2024, 3, 5), utc(2024, 4, 1)),
        ("@weekly", utc(2024, 3, 5), utc(2024, 3, 10)),  # Sunday
        ("@daily", utc(2024, 3, 5, 13), utc(2024, 3, 6)),
        ("@midnight", utc(2024, 3, 5, 13), utc(2024, 3, 6)),
        ("@hourly", utc(2024, 3, 5, 13, 1), utc(2024, 3, 5, 14)),
        ("@DAILY", utc(2024, 3, 5, 13), utc(2024, 3, 6)),
    ],
)
def test_descriptors(descriptor: str, after: datetime, expected: datetime) -> None:
    assert next_tick(parse_cron(descriptor), after) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("bad", "fields"),
        ("* * * *", "4 fields"),
        ("* * * * * *", "6 fields"),
        ("61 * * * *", "invalid cron expression"),
        ("* 25 * * *", "invalid cron expression"),
        ("0 0 30 2 *", "invalid cron expression"),  # never fires
        ("@reboot", "descriptor"),
        ("@every 5m", "descriptor"),
        ("TZ=Mars/Olympus 0 * * * *", "unknown time zone"),
        ("TZ=../../etc/passwd 0 * * * *", "unknown time zone"),
        ("TZ=UTC", "no schedule"),
        ("H * * * *", "invalid cron expression"),
        ("x" * 300, "longer than"),
    ],
)
def test_parse__junk_raises_cron_error(text: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(text)


def test_parse__jitter() -> None:
    assert parse_cron("* * * * *", jitter="30s").jitter == timedelta(seconds=30)
    assert parse_cron("* * * * *", jitter="1m30s").jitter == timedelta(seconds=90)
    assert parse_cron("* * * * *", jitter=timedelta(seconds=5)).jitter == timedelta(seconds=5)
    with pytest.raises(CronError, match="jitter"):
        parse_cron("* * * * *", jitter="soon")
    with pytest.raises(CronError, match="jitter"):
        parse_cron("* * * * *", jitter=timedelta(seconds=-1))


def test_next_tick__strictly_after() -> None:
    s = parse_cron("0 * * * *")
    assert next_tick(s, utc(2024, 1, 1, 1, 0)) == utc(2024, 1, 1, 2, 0)
    assert next_tick(s, utc(2024, 1, 1, 0, 59, 59)) == utc(2024, 1, 1, 1, 0)
    assert next_tick(s, utc(2024, 1, 1, 1, 0, 0) - timedelta(microseconds=1)) == utc(2024, 1, 1, 1)


def test_next_tick__returns_aware_utc_and_rejects_naive() -> None:
    tick = next_tick(parse_cron("TZ=Asia/Kolkata 0 12 * * *"), utc(2024, 1, 1))
    assert tick.tzinfo is UTC
    assert tick == utc(2024, 1, 1, 6, 30)  # 12:00 IST
    with pytest.raises(ValueError, match="aware"):
        next_tick(parse_cron("* * * * *"), datetime(2024, 1, 1))


def test_next_tick__tz_follows_local_wall_clock_across_seasons() -> None:
    s = parse_cron("TZ=America/New_York 0 9 * * *")
    assert next_tick(s, utc(2024, 1, 15)) == utc(2024, 1, 15, 14)  # EST
    assert next_tick(s, utc(2024, 7, 15)) == utc(2024, 7, 15, 13)  # EDT


def test_dst_spring_forward__skipped_time_fires_once_after_gap() -> None:
    # 2024-03-10 02:00 EST -> 03:00 EDT; 02:30 does not exist that day.
    s = parse_cron("TZ=America/New_York 30 2 * * *")
    ticks = ticks_between(s, utc(2024, 3, 9), utc(2024, 3, 12), 10)
    assert ticks == [
        utc(2024, 3, 9, 7, 30),  # 02:30 EST
        utc(2024, 3, 10, 7, 0),  # 03:00 EDT, right after the gap
        utc(2024, 3, 11, 6, 30),  # 02:30 EDT
    ]


def test_dst_spring_forward__hourly_has_no_phantom_hour() -> None:
    s = parse_cron("TZ=America/New_York 0 * * * *")
    ticks = ticks_between(s, utc(2024, 3, 10, 5, 30), utc(2024, 3, 10, 8, 30), 10)
    assert ticks == [utc(2024, 3, 10, 6), utc(2024, 3, 10, 7), utc(2024, 3, 10, 8)]


def test_dst_fall_back__fixed_time_fires_once() -> None:
    # 2024-11-03 02:00 EDT -> 01:00 EST; 01:30 happens twice.
    s = parse_cron("TZ=America/New_York 30 1 * * *")
    ticks = ticks_between(s, utc(2024, 11, 2), utc(2024, 11, 5), 10)
    assert ticks == [
        utc(2024, 11, 2, 5, 30),  # 01:30 EDT
        utc(2024, 11, 3, 5, 30),  # 01:30 EDT, first pass only
        utc(2024, 11, 4, 6, 30),  # 01:30 EST
    ]
    assert next_tick(s, utc(2024, 11, 3, 5, 30)) == utc(2024, 11, 4, 6, 30)


def test_dst_fall_back__every_hour_expression_fires_in_both_passes() -> None:
    s = parse_cron("TZ=America/New_York */30 * * * *")
    ticks = ticks_between(s, utc(2024, 11, 3, 4, 45), utc(2024, 11, 3, 7, 15), 10)
    assert ticks == [
        utc(2024, 11, 3, 5, 0),
        utc(2024, 11, 3, 5, 30),
        utc(2024, 11, 3, 6, 0),  # 01:00 EST, second pass
        utc(2024, 11, 3, 6, 30),
        utc(2024, 11, 3, 7, 0),
    ]
    # Real time between ticks is never more than the 30 minutes the expression asks for.
    assert all(b - a == timedelta(minutes=30) for a, b in zip(ticks, ticks[1:], strict=False))


def test_dst_half_hour_zone() -> None:
    # Lord Howe Island moves its clocks by 30 minutes.
    s = parse_cron("TZ=Australia/Lord_Howe 45 1 * * *")
    start = datetime(2024, 4, 6, 12, tzinfo=ZoneInfo("Australia/Lord_Howe"))
    ticks = ticks_between(s, start, start + timedelta(days=2), 10)
    local = [t.astimezone(ZoneInfo("Australia/Lord_Howe")) for t in ticks]
    assert [(t.hour, t.minute) for t in local] == [(1, 45), (1, 45)]
    assert ticks[1] - ticks[0] == timedelta(days=1, minutes=30)


def test_ticks_between__bounds_and_limit() -> None:
    s = parse_cron("*/10 * * * *")
    start, end = utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 1, 0)
    ticks = ticks_between(s, start, end, 100)
    assert ticks[0] == utc(2024, 1, 1, 0, 10)  # start excluded
    assert ticks[-1] == end  # end included
    assert len(ticks) == 6
    assert ticks_between(s, start, end, 2) == [utc(2024, 1, 1, 0, 10), utc(2024, 1, 1, 0, 20)]
    assert ticks_between(s, start, end, 0) == []
    assert ticks_between(s, end, start, 5) == []


def test_ticks_between__newest_keeps_latest_ticks_in_order() -> None:
    s = parse_cron("*/10 * * * *")
    start, end = utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 1, 0)
    assert ticks_between(s, start, end, 2, newest=True) == [
        utc(2024, 1, 1, 0, 50),
        utc(2024, 1, 1, 1, 0),
    ]
    assert ticks_between(s, start, end, 100, newest=True) == ticks_between(s, start, end, 100)


def test_ticks_between__newest_matches_forward_across_dst() -> None:
    for expr in ("TZ=America/New_York 30 1 * * *", "TZ=America/New_York */20 * * * *"):
        s = parse_cron(expr)
        start, end = utc(2024, 11, 2), utc(2024, 11, 4)
        forward = ticks_between(s, start, end, 1000)
        assert ticks_between(s, start, end, 1000, newest=True) == forward


def test_jitter_for__deterministic_in_range_and_spread() -> None:
    s = parse_cron("* * * * *", jitter="30s")
    tick = utc(2024, 1, 1, 0, 1)
    a = jitter_for(s, "fn_a", tick)
    assert a == jitter_for(s, "fn_a", tick)
    # The same instant written in another zone gives the same jitter.
    assert a == jitter_for(s, "fn_a", tick.astimezone(ZoneInfo("Asia/Tokyo")))
    values = {jitter_for(s, f"fn_{i}", tick) for i in range(200)}
    assert all(timedelta(0) <= v < timedelta(seconds=30) for v in values)
    assert len(values) > 190
    per_tick = {jitter_for(s, "fn_a", tick + timedelta(minutes=i)) for i in range(50)}
    assert len(per_tick) > 45


def test_jitter_for__zero_without_jitter() -> None:
    assert jitter_for(parse_cron("* * * * *"), "fn", utc(2024, 1, 1)) == timedelta(0)
