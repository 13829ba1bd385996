"""A synced function's config, parsed once into types: everything the engine reads.

The SDKs register each function as a JSON config (``triggers``, ``steps``, ``cancel``,
``timeouts`` and the flow-control keys ``concurrency``, ``throttle``, ``rateLimit``,
``idempotency``, ``debounce``, ``batchEvents``, ``priority``, ``singleton``). This is
the one place that config is read:

* :func:`parse_function_config` is what app sync runs (through
  ``messages.parse_register_request``): a config the engine cannot use is refused with
  a ValidationError naming the field (``functions[0].throttle.period``);
* :func:`load_function_config` reads a config the store kept. It never raises: a part
  that does not parse any more falls back to its default and is listed in
  ``problems``. ``store/rows`` keeps one per stored config text, so a function is
  parsed once per config version, not per call.

CEL expressions (trigger and cancel conditions, flow-control keys) are compiled here,
once. Trigger and cancel conditions are not checked at sync (as on Inngest): one that
does not compile never holds.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from offload.errors import ExpressionError, ValidationError
from offload.protocol.durations import duration_ms, parse_duration
from offload.protocol.expressions import Expression, compile_expression

__all__ = [
    "DEFAULT_BATCH_TIMEOUT",
    "DEFAULT_RETRIES",
    "MAX_BATCH_SIZE",
    "MAX_CONCURRENCY",
    "MAX_RETRIES",
    "BatchRule",
    "CancelRule",
    "ConcurrencyRule",
    "Condition",
    "DebounceRule",
    "FlowConfig",
    "FunctionConfig",
    "GcraRule",
    "SingletonRule",
    "Trigger",
    "check_url",
    "event_name_matches",
    "int_in",
    "load_function_config",
    "parse_flow",
    "parse_function_config",
]

DEFAULT_RETRIES = 4
MAX_RETRIES = 20
MAX_CONCURRENCY = 100_000
MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT = "5s"
"""Used when ``batchEvents.timeout`` is missing (the Python SDK makes it optional)."""

T = TypeVar("T")


# -- the types ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """A CEL condition; ``expression`` is None when the source does not compile (it
    then never holds, as an expression that fails to evaluate does not)."""

    source: str
    expression: Expression | None

    def holds(self, variables: Mapping[str, Any]) -> bool:
        """True if the condition is truthy over ``variables``."""
        return self.expression is not None and self.expression.matches(variables)


def event_name_matches(pattern: Any, name: Any) -> bool:
    """Whether an event trigger's name matches: exactly, or a wildcard ``prefix/*`` (the
    SDKs allow a trailing ``*``, matching any name that starts with what precedes it)."""
    if not isinstance(pattern, str) or not isinstance(name, str):
        return False
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return pattern == name


@dataclass(frozen=True, slots=True)
class Trigger:
    """A function trigger: an event (with an optional CEL expression) or a cron."""

    event: str | None = None
    expression: str | None = None
    cron: str | None = None
    jitter: str | None = None
    condition: Condition | None = field(default=None, compare=False, repr=False)
    """``expression`` compiled."""

    def starts_on(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` (a payload) starts a run through this trigger."""
        if self.event is None or not event_name_matches(self.event, event.get("name")):
            return False
        return self.condition is None or self.condition.holds({"event": event})


@dataclass(frozen=True, slots=True)
class CancelRule:
    """A ``cancel`` entry: live runs are cancelled by an event of this name whose
    condition holds (``event`` = the run's trigger, ``async`` = the new event), within
    ``timeout`` of the run's creation when one is set."""

    event: str
    condition: Condition | None = None
    timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class ConcurrencyRule:
    """One concurrency limit; ``scope`` is ``fn`` or ``env`` (``account`` counts as env)."""

    limit: int
    key: Expression | None
    scope: str


@dataclass(frozen=True, slots=True)
class GcraRule:
    """A throttle or a rate limit: ``limit`` runs per ``period_ms``."""

    limit: int
    period_ms: int
    burst: int
    key: Expression | None


@dataclass(frozen=True, slots=True)
class DebounceRule:
    """Debounce: one run after ``period_ms`` without a new event (at most ``timeout_ms``)."""

    period_ms: int
    timeout_ms: int | None
    key: Expression | None


@dataclass(frozen=True, slots=True)
class BatchRule:
    """Batching: up to ``max_size`` events or ``timeout_ms``, for events where ``condition``
    holds."""

    max_size: int
    timeout_ms: int
    key: Expression | None
    condition: Expression | None


@dataclass(frozen=True, slots=True)
class SingletonRule:
    """One live run per key: ``skip`` the new one or ``cancel`` the old one."""

    mode: str
    key: Expression | None


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """A function's flow control, keys compiled; evaluated per event by ``engine/flow``."""

    concurrency: tuple[ConcurrencyRule, ...] = ()
    throttle: GcraRule | None = None
    rate_limit: GcraRule | None = None
    idempotency: Expression | None = None
    debounce: DebounceRule | None = None
    batch: BatchRule | None = None
    priority: Expression | None = None
    """``priority.run``: seconds of head start, evaluated per event."""
    singleton: SingletonRule | None = None


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """Everything the engine reads from a function's config, parsed."""

    url: str | None
    """The URL the app serves the function's steps at (``steps.<step>.runtime.url``)."""
    retries: int = DEFAULT_RETRIES
    """Retries (attempts = retries + 1), capped at :data:`MAX_RETRIES`."""
    step: str | None = None
    """The key of the step entry in ``steps`` (``step`` for the SDKs)."""
    triggers: tuple[Trigger, ...] = ()
    cancel: tuple[CancelRule, ...] = ()
    start_timeout: timedelta | None = None
    finish_timeout: timedelta | None = None
    flow: FlowConfig = FlowConfig()
    problems: tuple[str, ...] = ()
    """What :func:`load_function_config` had to drop (always empty after sync)."""

    @property
    def crons(self) -> tuple[Trigger, ...]:
        """The cron triggers."""
        return tuple(t for t in self.triggers if t.cron is not None)

    def call_url(self) -> str:
        """The step URL; ValidationError naming the field when the config has none."""
        if self.url is None:
            raise ValidationError("steps.step.runtime.url", "is missing", "required")
        return self.url


# -- reading -----------------------------------------------------------------------------


class _Reader:
    """Runs each part's parser: strict (sync) raises with the field's full path; lenient
    (a stored config) keeps the part's default and notes the problem."""

    def __init__(self, path: str, *, strict: bool) -> None:
        self.prefix = f"{path}." if path else ""
        self.strict = strict
        self.problems: list[str] = []

    def part(self, parse: Callable[[], T], default: T) -> T:
        try:
            return parse()
        except ValidationError as exc:
            if self.strict:
                raise ValidationError(self.prefix + exc.field, exc.message, exc.code) from None
            self.problems.append(f"{exc.field}: {exc.message}")
            return default


def int_in(value: Any, field_name: str, lo: int, hi: int) -> int:
    """``value`` as an int within ``[lo, hi]``; ValidationError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field_name, "must be an integer", "invalid_type")
    if not lo <= value <= hi:
        raise ValidationError(field_name, f"must be between {lo} and {hi}", "out_of_range")
    return value


def _obj(config: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = config.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(name, "must be an object", "invalid_type")
    return value


def _expr(value: Any, field_name: str) -> Expression | None:
    """A flow-control key: a CEL expression that must compile (checked at sync)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(field_name, "must be a CEL expression string", "invalid_type")
    try:
        return compile_expression(value)
    except ExpressionError as exc:
        raise ValidationError(field_name, str(exc), "invalid_expression") from None


def _condition(source: Any) -> Condition | None:
    """A trigger or cancel condition (not checked at sync: one that fails never holds)."""
    if not isinstance(source, str) or not source:
        return None
    try:
        return Condition(source, compile_expression(source))
    except ExpressionError:
        return Condition(source, None)


def check_url(value: Any, path: str) -> str:
    """``value`` if it is an absolute http(s) URL; ValidationError naming ``path``."""
    if not isinstance(value, str) or not value:
        raise ValidationError(path, "is required", "required")
    try:
        parsed = urllib.parse.urlsplit(value)
    except ValueError as err:
        raise ValidationError(path, f"is not a URL: {err}", "invalid_url") from err
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValidationError(path, "must be an absolute http(s) URL", "invalid_url")
    return value


def _check_duration(value: Any, path: str) -> None:
    if value is None:
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Some SDK versions send plain numbers (seconds / ms); tolerate them.
        return
    if not isinstance(value, str):
        raise ValidationError(path, "must be a duration string", "invalid_duration")
    try:
        parse_duration(value)
    except ValidationError as err:
        raise ValidationError(path, err.message, "invalid_duration") from err


def _string_duration(value: Any, path: str) -> timedelta | None:
    """A time string as a timedelta; numbers (tolerated at sync) and blanks mean none."""
    _check_duration(value, path)
    return parse_duration(value) if isinstance(value, str) and value else None


def _trigger(raw: Any, path: str) -> Trigger:
    if not isinstance(raw, Mapping):
        raise ValidationError(path, "must be an object", "invalid_type")
    event = raw.get("event")
    cron = raw.get("cron")
    if (event is None) == (cron is None):
        raise ValidationError(path, "needs exactly one of 'event' or 'cron'", "invalid_trigger")
    expression = raw.get("expression")
    jitter = raw.get("jitter")
    if event is not None:
        if not isinstance(event, str) or not event.strip():
            raise ValidationError(f"{path}.event", "must be a non-empty string", "invalid_type")
        if expression is not None and not isinstance(expression, str):
            raise ValidationError(f"{path}.expression", "must be a string", "invalid_type")
        return Trigger(event=event, expression=expression or None,
                       condition=_condition(expression))
    if not isinstance(cron, str) or not cron.strip():
        raise ValidationError(f"{path}.cron", "must be a non-empty string", "invalid_type")
    if jitter is not None:
        _check_duration(jitter, f"{path}.jitter")
        if not isinstance(jitter, str):
            raise ValidationError(f"{path}.jitter", "must be a duration string", "invalid_type")
    return Trigger(cron=cron, jitter=jitter or None)


def _triggers(raw: Mapping[str, Any], reader: _Reader) -> tuple[Trigger, ...]:
    listed = raw.get("triggers")
    if not isinstance(listed, list) or not listed:
        if reader.strict:
            raise ValidationError(f"{reader.prefix}triggers", "needs at least one trigger",
                                  "required")
        return ()
    found = [reader.part(partial(_trigger, t, f"triggers[{i}]"), None)
             for i, t in enumerate(listed)]
    return tuple(t for t in found if t is not None)


def _step(raw: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    steps = raw.get("steps")
    if not isinstance(steps, Mapping) or not steps:
        raise ValidationError("steps", "needs the 'step' entry", "required")
    key = "step" if "step" in steps else str(next(iter(steps)))
    step = steps[key]
    if not isinstance(step, Mapping):
        raise ValidationError(f"steps.{key}", "must be an object", "invalid_type")
    return key, step


def _url(key: str, step: Mapping[str, Any]) -> str:
    runtime = step.get("runtime")
    if not isinstance(runtime, Mapping):
        raise ValidationError(f"steps.{key}.runtime", "is required", "required")
    return check_url(runtime.get("url"), f"steps.{key}.runtime.url")


def _retries(key: str, step: Mapping[str, Any]) -> int:
    retries = step.get("retries")
    if retries is None:
        return DEFAULT_RETRIES
    if not isinstance(retries, Mapping):
        raise ValidationError(f"steps.{key}.retries", "must be an object", "invalid_type")
    attempts = retries.get("attempts")
    if attempts is None:
        return DEFAULT_RETRIES
    if isinstance(attempts, float) and attempts.is_integer():
        attempts = int(attempts)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
        raise ValidationError(f"steps.{key}.retries.attempts", "must be a non-negative integer",
                              "invalid_retries")
    return min(attempts, MAX_RETRIES)


_DURATION_FIELDS: tuple[tuple[str, str], ...] = (
    ("throttle", "period"),
    ("rateLimit", "period"),
    ("debounce", "period"),
    ("debounce", "timeout"),
    ("timeouts", "start"),
    ("timeouts", "finish"),
    ("batchEvents", "timeout"),
)


def _cancel_rule(raw: Any, path: str) -> CancelRule:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("event"), str):
        raise ValidationError(f"{path}.event", "is required", "required")
    return CancelRule(event=raw["event"], condition=_condition(raw.get("if")),
                      timeout=_string_duration(raw.get("timeout"), f"{path}.timeout"))


# -- flow control ----------------------------------------------------------------------


def _concurrency(config: Mapping[str, Any]) -> tuple[ConcurrencyRule, ...]:
    raw = config.get("concurrency")
    if raw is None:
        return ()
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [{"limit": raw}]
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list):
        raise ValidationError("concurrency", "must be an integer or a list of {limit, key, "
                              "scope}", "invalid_type")
    if len(raw) > 2:
        raise ValidationError("concurrency", "at most two concurrency limits", "too_many")
    out: list[ConcurrencyRule] = []
    for i, entry in enumerate(raw):
        where = f"concurrency[{i}]"
        if not isinstance(entry, Mapping):
            raise ValidationError(where, "must be an object", "invalid_type")
        limit = int_in(entry.get("limit", 0), f"{where}.limit", 0, MAX_CONCURRENCY)
        key = _expr(entry.get("key"), f"{where}.key")
        scope = entry.get("scope") or "fn"
        if scope not in ("fn", "env", "account"):
            raise ValidationError(f"{where}.scope", "must be fn, env or account",
                                  "invalid_choice")
        if limit > 0:  # 0 means unlimited
            out.append(ConcurrencyRule(limit, key, "fn" if scope == "fn" else "env"))
    return tuple(out)


def _gcra(config: Mapping[str, Any], name: str) -> GcraRule | None:
    spec = _obj(config, name)
    if spec is None:
        return None
    limit = int_in(spec.get("limit"), f"{name}.limit", 1, 1_000_000)
    period = duration_ms(spec.get("period"), f"{name}.period")
    burst = 1
    if name == "throttle" and spec.get("burst") is not None:
        burst = int_in(spec.get("burst"), "throttle.burst", 1, 10_000)
    return GcraRule(limit=limit, period_ms=period, burst=burst,
                    key=_expr(spec.get("key"), f"{name}.key"))


def _debounce(config: Mapping[str, Any]) -> DebounceRule | None:
    spec = _obj(config, "debounce")
    if spec is None:
        return None
    period = duration_ms(spec.get("period"), "debounce.period")
    timeout = spec.get("timeout")
    timeout_ms = None if timeout is None else duration_ms(timeout, "debounce.timeout")
    return DebounceRule(period_ms=period, timeout_ms=timeout_ms,
                        key=_expr(spec.get("key"), "debounce.key"))


def _batch(config: Mapping[str, Any]) -> BatchRule | None:
    spec = _obj(config, "batchEvents")
    if spec is None:
        return None
    size = int_in(spec.get("maxSize"), "batchEvents.maxSize", 1, MAX_BATCH_SIZE)
    timeout = duration_ms(spec.get("timeout", DEFAULT_BATCH_TIMEOUT), "batchEvents.timeout")
    return BatchRule(max_size=size, timeout_ms=timeout,
                     key=_expr(spec.get("key"), "batchEvents.key"),
                     condition=_expr(spec.get("if"), "batchEvents.if"))


def _priority(config: Mapping[str, Any]) -> Expression | None:
    spec = _obj(config, "priority")
    return None if spec is None else _expr(spec.get("run"), "priority.run")


def _singleton(config: Mapping[str, Any]) -> SingletonRule | None:
    spec = _obj(config, "singleton")
    if spec is None:
        return None
    key = _expr(spec.get("key"), "singleton.key")
    mode = spec.get("mode", "skip")
    if mode not in ("skip", "cancel"):
        raise ValidationError("singleton.mode", "must be skip or cancel", "invalid_choice")
    return SingletonRule(mode=str(mode), key=key)


def _flow(config: Mapping[str, Any], reader: _Reader) -> FlowConfig:
    part = reader.part
    return FlowConfig(
        concurrency=part(lambda: _concurrency(config), ()),
        throttle=part(lambda: _gcra(config, "throttle"), None),
        rate_limit=part(lambda: _gcra(config, "rateLimit"), None),
        idempotency=part(lambda: _expr(config.get("idempotency"), "idempotency"), None),
        debounce=part(lambda: _debounce(config), None),
        batch=part(lambda: _batch(config), None),
        priority=part(lambda: _priority(config), None),
        singleton=part(lambda: _singleton(config), None))


def parse_flow(config: Mapping[str, Any]) -> FlowConfig:
    """Only the flow-control part of a config, strictly (ValidationError naming the field)."""
    return _flow(config, _Reader("", strict=True))


# -- the whole config --------------------------------------------------------------------


def _read(raw: Mapping[str, Any], reader: _Reader) -> FunctionConfig:
    part = reader.part
    triggers = _triggers(raw, reader)
    no_step: tuple[str, Mapping[str, Any]] = ("", {})
    key, step = part(partial(_step, raw), no_step)
    url = part(lambda: _url(key, step), None) if key else None
    retries = part(lambda: _retries(key, step), DEFAULT_RETRIES) if key else DEFAULT_RETRIES
    for section, name in _DURATION_FIELDS:
        container = raw.get(section)
        if isinstance(container, Mapping):
            part(partial(_check_duration, container.get(name), f"{section}.{name}"), None)
    cancel: list[CancelRule] = []
    listed = raw.get("cancel")
    if isinstance(listed, list):
        for i, entry in enumerate(listed):
            rule = part(partial(_cancel_rule, entry, f"cancel[{i}]"), None)
            if rule is not None:
                cancel.append(rule)
    flow = _flow(raw, reader)
    timeouts = raw.get("timeouts")
    start = finish = None
    if isinstance(timeouts, Mapping):
        start = part(lambda: _string_duration(timeouts.get("start"), "timeouts.start"), None)
        finish = part(lambda: _string_duration(timeouts.get("finish"), "timeouts.finish"), None)
    return FunctionConfig(url=url, retries=retries, step=key or None, triggers=triggers,
                          cancel=tuple(cancel), start_timeout=start, finish_timeout=finish,
                          flow=flow, problems=tuple(reader.problems))


def parse_function_config(raw: Mapping[str, Any], path: str = "") -> FunctionConfig:
    """A function config as an app syncs it, checked: ValidationError whose field is the
    path of the first unusable value under ``path`` (``functions[0].steps.step.runtime``)."""
    return _read(raw, _Reader(path, strict=True))


def load_function_config(raw: Any) -> FunctionConfig:
    """A config as the store kept it; never raises (see ``problems``)."""
    if not isinstance(raw, Mapping):
        return FunctionConfig(url=None, problems=("config: must be an object",))
    return _read(raw, _Reader("", strict=False))
