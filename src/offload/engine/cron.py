"""Cron schedules: parsing, next ticks in a time zone, and deterministic jitter.

Expressions have five fields (minute hour day-of-month month day-of-week, with
croniter's ``L`` and ``#`` extensions) or a descriptor (``@yearly @annually @monthly
@weekly @daily @midnight @hourly``), optionally prefixed by ``TZ=Area/City `` or
``CRON_TZ=Area/City ``. The default zone is UTC.

Daylight-saving rules, in the schedule's zone:

* spring forward: a wall time the clocks skip fires once, at the first instant
  after the gap (``30 2 * * *`` fires at 03:00 on that day);
* fall back: a wall time that happens twice fires once, at the first pass, unless
  the expression fires every hour, in which case both passes fire (as cronie does),
  so ``*/15 * * * *`` keeps firing every 15 real minutes.

A tick is an aware UTC datetime; it names the run (unique ``(function, tick)``).
Jitter delays the run, not the tick.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from offload.errors import CronError, ValidationError
from offload.protocol.durations import parse_duration

__all__ = ["CronSchedule", "jitter_for", "next_tick", "parse_cron", "ticks_between"]

_DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_MAX_LENGTH = 256


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule: ``expression`` without its TZ prefix, its zone and max jitter."""

    expression: str
    tz: ZoneInfo
    jitter: timedelta


def _parse_jitter(jitter: str | timedelta | None) -> timedelta:
    if jitter is None:
        return timedelta(0)
    if isinstance(jitter, timedelta):
        value = jitter
    else:
        try:
            value = parse_duration(jitter)
        except ValidationError as err:
            raise CronError(f"invalid jitter {jitter!r}: {err.message}") from None
    if value < timedelta(0):
        raise CronError("jitter must not be negative")
    return value


def parse_cron(text: str, *, jitter: str | timedelta | None = None) -> CronSchedule:
    """Parse ``text`` into a :class:`CronSchedule`; raise :class:`CronError` on junk.

    ``jitter`` is the largest random delay per tick (``"30s"``, a timedelta, or None).
    """
    if not isinstance(text, str) or not text.strip():
        raise CronError("cron expression is empty")
    if len(text) > _MAX_LENGTH:
        raise CronError(f"cron expression is longer than {_MAX_LENGTH} characters")
    body = text.strip()
    tz = ZoneInfo("UTC")
    head, _, rest = body.partition(" ")
    for prefix in ("CRON_TZ=", "TZ="):
        if head.startswith(prefix):
            zone = head[len(prefix) :]
            try:
                tz = ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise CronError(f"unknown time zone {zone!r} in {text!r}") from None
            body = rest.strip()
            break
    if not body:
        raise CronError(f"cron expression {text!r} has a time zone but no schedule")
    fields = body.split()
    if fields[0].startswith("@"):
        expression = fields[0].lower()
        if len(fields) != 1 or expression not in _DESCRIPTORS:
            raise CronError(
                f"unknown cron descriptor {body!r}; use one of {', '.join(sorted(_DESCRIPTORS))}"
            )
    elif len(fields) != 5:
        raise CronError(
            f"cron expression {body!r} has {len(fields)} fields; "
            "expected 5 (minute hour day-of-month month day-of-week)"
        )
    else:
        expression = " ".join(fields)
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=tz)).get_next(datetime)
    except CroniterError as err:
        raise CronError(f"invalid cron expression {body!r}: {err}") from None
    except (ValueError, KeyError, TypeError, OverflowError) as err:
        raise CronError(f"invalid cron expression {body!r}: {err}") from None
    return CronSchedule(expression=expression, tz=tz, jitter=_parse_jitter(jitter))


def _require_aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
    return value


def _fires_every_hour(expression: str) -> bool:
    hours = croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).expanded[1]
    return hours == ["*"] or len(set(hours)) >= 24


def _is_second_pass(tick: datetime, tz: ZoneInfo) -> bool:
    """True if ``tick`` is the second occurrence of a wall time repeated at fall back."""
    wall = tick.astimezone(tz).replace(tzinfo=None)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    return first != tick.astimezone(UTC)


def _iterate(schedule: CronSchedule, start: datetime, *, backwards: bool) -> Iterator[datetime]:
    it = croniter(schedule.expression, start.astimezone(schedule.tz))
    hourly = _fires_every_hour(schedule.expression)
    last: datetime | None = None
    while True:
        try:
            local = it.get_prev(datetime) if backwards else it.get_next(datetime)
        except CroniterError:
            return
        tick = local.astimezone(UTC)
        if tick == last:
            continue
        last = tick
        if not hourly and _is_second_pass(tick, schedule.tz):
            continue
        yield tick


def next_tick(schedule: CronSchedule, after: datetime) -> datetime:
    """The first tick strictly after ``after`` (aware), as an aware UTC datetime."""
    after = _require_aware(after, "after").astimezone(UTC)
    for tick in _iterate(schedule, after, backwards=False):
        if tick > after:
            return tick
    raise CronError(f"cron expression {schedule.expression!r} never fires again")


def ticks_between(
    schedule: CronSchedule,
    start: datetime,
    end: datetime,
    limit: int,
    *,
    newest: bool = False,
) -> list[datetime]:
    """Ticks ``t`` with ``start < t <= end``, oldest first, at most ``limit`` of them.

    With ``newest=True`` the ``limit`` most recent ticks are kept instead of the
    oldest (catch up "the last N" after downtime); the list is still oldest first.
    """
    start = _require_aware(start, "start").astimezone(UTC)
    end = _require_aware(end, "end").astimezone(UTC)
    if limit <= 0 or end <= start:
        return []
    ticks: list[datetime] = []
    if newest:
        # Walk back from just after `end` so a tick exactly at `end` is included.
        for tick in _iterate(schedule, end + timedelta(microseconds=1), backwards=True):
            if tick <= start or len(ticks) >= limit:
                break
            if tick <= end:
                ticks.append(tick)
        ticks.reverse()
        return ticks
    for tick in _iterate(schedule, start, backwards=False):
        if tick > end or len(ticks) >= limit:
            break
        if tick > start:
            ticks.append(tick)
    return ticks


def jitter_for(schedule: CronSchedule, function_id: str, tick: datetime) -> timedelta:
    """A delay in ``[0, schedule.jitter)`` that every engine process computes alike.

    Derived from SHA-256 of ``function_id`` and the tick, so it differs per function
    and per tick but not per process.
    """
    span = schedule.jitter // timedelta(microseconds=1)
    if span <= 0:
        return timedelta(0)
    stamp = _require_aware(tick, "tick").astimezone(UTC).isoformat()
    digest = hashlib.sha256(f"{function_id}\x00{stamp}".encode()).digest()
    return timedelta(microseconds=int.from_bytes(digest[:8], "big") % span)
