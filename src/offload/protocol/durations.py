"""Inngest "time strings": ``300ms``, ``2h45m``, ``1.5s``, ``1d``, ``1w``."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from offload.errors import ValidationError

__all__ = ["MAX_PERIOD", "duration_ms", "format_duration", "parse_duration"]

MAX_PERIOD = datetime.timedelta(days=7)
"""The longest flow-control period (throttle, rate limit, debounce, batch timeout)."""

# Microseconds per unit; nanoseconds are kept as a fraction and truncated at the end.
_UNIT_MICROS: dict[str, Decimal] = {
    "ns": Decimal("0.001"),
    "us": Decimal(1),
    "µs": Decimal(1),  # Go accepts both micro signs
    "μs": Decimal(1),
    "ms": Decimal(1_000),
    "s": Decimal(1_000_000),
    "m": Decimal(60_000_000),
    "h": Decimal(3_600_000_000),
    "d": Decimal(86_400_000_000),
    "w": Decimal(604_800_000_000),
}

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w)")


def parse_duration(text: str) -> datetime.timedelta:
    """Parse a time string such as ``"2h45m"`` or ``"1.5s"`` into a timedelta.

    Units are ``ns us ms s m h d w``; parts may repeat and carry decimals, as in
    Go's ``time.ParseDuration`` plus days and weeks. A bare ``"0"`` is zero.
    Raises ``ValidationError("duration", ...)`` on empty, negative or malformed input.
    """
    if not isinstance(text, str):
        raise ValidationError("duration", "must be a string", "invalid_type")
    s = text.strip()
    if not s:
        raise ValidationError("duration", "must not be empty", "empty")
    if s.startswith("-"):
        raise ValidationError("duration", f"must not be negative: {text!r}", "negative")
    if s.startswith("+"):
        s = s[1:]
    if s == "0":
        return datetime.timedelta(0)
    total = Decimal(0)
    pos = 0
    while pos < len(s):
        match = _PART.match(s, pos)
        if match is None:
            raise ValidationError("duration", f"malformed duration: {text!r}", "malformed")
        try:
            total += Decimal(match.group(1)) * _UNIT_MICROS[match.group(2)]
        except InvalidOperation as err:
            raise ValidationError("duration", f"malformed duration: {text!r}", "malformed") from err
        pos = match.end()
    try:
        return datetime.timedelta(microseconds=int(total))
    except OverflowError as err:
        raise ValidationError("duration", f"duration too large: {text!r}", "too_large") from err


def format_duration(value: datetime.timedelta) -> str:
    """Render a timedelta as a time string the SDKs and :func:`parse_duration` accept."""
    micros = value // datetime.timedelta(microseconds=1)
    if micros < 0:
        raise ValidationError("duration", "must not be negative", "negative")
    if micros == 0:
        return "0s"
    parts: list[str] = []
    for unit in ("w", "d", "h", "m", "s", "ms", "us"):
        size = int(_UNIT_MICROS[unit])
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def duration_ms(value: Any, field_name: str, *, minimum_ms: int = 1,
                maximum: datetime.timedelta = MAX_PERIOD) -> int:
    """A time string (``"1m30s"``) or a number of seconds as milliseconds, bounds checked;
    errors name ``field_name``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(field_name, "must be a time string like \"30s\" or seconds",
                              "invalid_type")
    if isinstance(value, str):
        try:
            delta = parse_duration(value)
        except ValidationError as exc:
            raise ValidationError(field_name, exc.message, exc.code) from None
    else:
        if value != value or value < 0:
            raise ValidationError(field_name, "must not be negative", "negative")
        delta = datetime.timedelta(seconds=float(value))
    ms = int(delta / datetime.timedelta(milliseconds=1))
    if ms < minimum_ms:
        raise ValidationError(field_name, f"must be at least {minimum_ms} ms", "too_small")
    if delta > maximum:
        raise ValidationError(field_name, f"must be at most {format_duration(maximum)}",
                              "too_large")
    return ms
