"""Flow control settings: one shape for durable functions and HTTP tasks.

:func:`for_function` reads a synced function's SDK config (Inngest's ``concurrency``,
``throttle``, ``rateLimit``, ``idempotency``, ``debounce``, ``batchEvents``,
``priority``, ``singleton``) with the triggering event(s); :func:`for_task` reads an
HTTP task's fields. Both give a :class:`FlowSettings` with every key already
evaluated, and :func:`apply_to_new_run` puts it on the :class:`NewRun` the store
enforces (``store/admission.py``). Everything here is pure: no I/O, no clock.

Keys. Function keys are CEL expressions over ``{"event": event}``; task keys are
literal strings. Concurrency keys share one namespace: a function's ``scope: "env"``
key ``"stripe"`` and a task's ``concurrency_key: "stripe"`` are the same limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from offload.engine.expressions import evaluate_int, evaluate_key
from offload.errors import ExpressionError, ValidationError
from offload.models import ItemKind
from offload.protocol.durations import format_duration, parse_duration
from offload.store.base import (
    Batch,
    ConcurrencyLimit,
    Debounce,
    Gcra,
    Idempotency,
    NewRun,
    RunFlow,
    Singleton,
)

__all__ = [
    "IDEMPOTENCY_WINDOW",
    "MAX_PRIORITY",
    "FlowSettings",
    "apply_to_new_run",
    "duration_ms",
    "for_function",
    "for_task",
    "validate_function_config",
]

IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_PRIORITY = 600
"""Priority is a head start in seconds, within [-600, 600]."""
MAX_CONCURRENCY = 100_000
MAX_PERIOD = timedelta(days=7)
MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT = "5s"
"""Used when ``batchEvents.timeout`` is missing (the Python SDK makes it optional)."""


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """Flow control for one new run, keys evaluated. Empty settings change nothing."""

    concurrency: tuple[ConcurrencyLimit, ...] = ()
    throttle: Gcra | None = None
    rate_limit: Gcra | None = None
    idempotency: tuple[str, str] | None = None
    """``(scope, key)``: one run per key per 24 hours."""
    debounce: Debounce | None = None
    batch: Batch | None = None
    priority: int = 0
    singleton: Singleton | None = None
    problems: tuple[str, ...] = field(default=(), compare=False)
    """Keys that failed to evaluate (and fell back to the shared key ``""``)."""

    def run_flow(self) -> RunFlow | None:
        """What the store enforces; None when nothing applies."""
        if not (self.concurrency or self.throttle or self.rate_limit or self.debounce
                or self.batch or self.singleton):
            return None
        return RunFlow(concurrency=list(self.concurrency), throttle=self.throttle,
                       rate_limit=self.rate_limit, debounce=self.debounce, batch=self.batch,
                       singleton=self.singleton)


def duration_ms(value: Any, field_name: str, *, minimum_ms: int = 1,
                maximum: timedelta = MAX_PERIOD) -> int:
    """A time string (``"1m30s"``) or a number of seconds as milliseconds, bounds checked."""
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
        delta = timedelta(seconds=float(value))
    ms = int(delta / timedelta(milliseconds=1))
    if ms < minimum_ms:
        raise ValidationError(field_name, f"must be at least {minimum_ms} ms", "too_small")
    if delta > maximum:
        raise ValidationError(field_name, f"must be at most {format_duration(maximum)}",
                              "too_large")
    return ms


def _int(value: Any, field_name: str, lo: int, hi: int) -> int:
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


def _expr(value: Any, field_name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(field_name, "must be a CEL expression string", "invalid_type")
    from offload.engine.expressions import compile_expression

    try:
        compile_expression(value)
    except ExpressionError as exc:
        raise ValidationError(field_name, str(exc), "invalid_expression") from None
    return value


# -- durable functions -----------------------------------------------------------------


def _concurrency_list(config: Mapping[str, Any]) -> list[tuple[int, str | None, str]]:
    raw = config.get("concurrency")
    if raw is None:
        return []
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [{"limit": raw}]
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list):
        raise ValidationError("concurrency", "must be an integer or a list of {limit, key, "
                              "scope}", "invalid_type")
    if len(raw) > 2:
        raise ValidationError("concurrency", "at most two concurrency limits", "too_many")
    out: list[tuple[int, str | None, str]] = []
    for i, entry in enumerate(raw):
        where = f"concurrency[{i}]"
        if not isinstance(entry, Mapping):
            raise ValidationError(where, "must be an object", "invalid_type")
        limit = _int(entry.get("limit", 0), f"{where}.limit", 0, MAX_CONCURRENCY)
        key = _expr(entry.get("key"), f"{where}.key")
        scope = entry.get("scope") or "fn"
        if scope not in ("fn", "env", "account"):
            raise ValidationError(f"{where}.scope", "must be fn, env or account",
                                  "invalid_choice")
        if limit > 0:
            out.append((limit, key, "fn" if scope == "fn" else "env"))
    return out


def validate_function_config(config: Mapping[str, Any]) -> None:
    """Raise ValidationError (naming the field) if the flow-control config is unusable."""
    _concurrency_list(config)
    for name in ("throttle", "rateLimit"):
        spec = _obj(config, name)
        if spec is not None:
            _int(spec.get("limit"), f"{name}.limit", 1, 1_000_000)
            duration_ms(spec.get("period"), f"{name}.period", maximum=timedelta(days=7))
            if name == "throttle" and spec.get("burst") is not None:
                _int(spec.get("burst"), "throttle.burst", 1, 10_000)
            _expr(spec.get("key"), f"{name}.key")
    _expr(config.get("idempotency"), "idempotency")
    debounce = _obj(config, "debounce")
    if debounce is not None:
        duration_ms(debounce.get("period"), "debounce.period")
        if debounce.get("timeout") is not None:
            duration_ms(debounce.get("timeout"), "debounce.timeout")
        _expr(debounce.get("key"), "debounce.key")
    batch = _obj(config, "batchEvents")
    if batch is not None:
        _int(batch.get("maxSize"), "batchEvents.maxSize", 1, MAX_BATCH_SIZE)
        duration_ms(batch.get("timeout", DEFAULT_BATCH_TIMEOUT), "batchEvents.timeout")
        _expr(batch.get("key"), "batchEvents.key")
        _expr(batch.get("if"), "batchEvents.if")
    priority = _obj(config, "priority")
    if priority is not None:
        _expr(priority.get("run"), "priority.run")
    singleton = _obj(config, "singleton")
    if singleton is not None:
        _expr(singleton.get("key"), "singleton.key")
        if singleton.get("mode", "skip") not in ("skip", "cancel"):
            raise ValidationError("singleton.mode", "must be skip or cancel", "invalid_choice")


class _Keys:
    """Evaluates key expressions over one event, remembering failures."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.variables = {"event": dict(event)}
        self.problems: list[str] = []

    def key(self, source: str | None, field_name: str) -> str:
        if not source:
            return ""
        try:
            return evaluate_key(source, self.variables)
        except ExpressionError as exc:
            self.problems.append(f"{field_name}: {exc}")
            return ""


def for_function(function_config: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
                 function_id: str) -> FlowSettings:
    """Flow control for a run of ``function_id`` triggered by ``events`` (the first one
    decides the keys).

    Events are payloads as the SDK sees them (``Event.as_payload()``). A key expression
    that fails (say, a missing field) falls back to the shared key ``""``, except the
    idempotency key, which then does not apply. Invalid configs raise ValidationError;
    call :func:`validate_function_config` at sync time to refuse them early.
    """
    config = function_config
    keys = _Keys(events[0] if events else {})
    fid = function_id

    concurrency = tuple(
        ConcurrencyLimit(f"fn:{fid}:{keys.key(key, 'concurrency.key')}" if scope == "fn"
                         else f"env:{keys.key(key, 'concurrency.key')}", limit)
        for limit, key, scope in _concurrency_list(config))

    def gcra(name: str, prefix: str) -> Gcra | None:
        spec = _obj(config, name)
        if spec is None:
            return None
        burst = spec.get("burst") if name == "throttle" else None
        return Gcra(key=f"{prefix}:fn:{fid}:{keys.key(_expr(spec.get('key'), name), name)}",
                    limit=_int(spec.get("limit"), f"{name}.limit", 1, 1_000_000),
                    period_ms=duration_ms(spec.get("period"), f"{name}.period"),
                    burst=_int(burst, "throttle.burst", 1, 10_000) if burst is not None else 1)

    idempotency = None
    idem_source = _expr(config.get("idempotency"), "idempotency")
    if idem_source:
        try:
            idempotency = (f"fn:{fid}", evaluate_key(idem_source, keys.variables))
        except ExpressionError as exc:
            keys.problems.append(f"idempotency: {exc}")

    debounce = None
    spec = _obj(config, "debounce")
    if spec is not None:
        timeout = spec.get("timeout")
        debounce_key = keys.key(_expr(spec.get("key"), "debounce.key"), "debounce")
        debounce = Debounce(
            key=f"debounce:fn:{fid}:{debounce_key}",
            period_ms=duration_ms(spec.get("period"), "debounce.period"),
            timeout_ms=None if timeout is None else duration_ms(timeout, "debounce.timeout"))

    batch = None
    spec = _obj(config, "batchEvents")
    if spec is not None:
        condition = _expr(spec.get("if"), "batchEvents.if")
        from offload.engine.expressions import compile_expression

        if condition is None or compile_expression(condition).matches(keys.variables):
            batch_key = keys.key(_expr(spec.get("key"), "batchEvents.key"), "batch")
            batch = Batch(
                key=f"batch:fn:{fid}:{batch_key}",
                max_size=_int(spec.get("maxSize"), "batchEvents.maxSize", 1, MAX_BATCH_SIZE),
                timeout_ms=duration_ms(spec.get("timeout", DEFAULT_BATCH_TIMEOUT),
                                       "batchEvents.timeout"))

    priority = 0
    spec = _obj(config, "priority")
    if spec is not None:
        source = _expr(spec.get("run"), "priority.run")
        if source:
            priority = evaluate_int(source, keys.variables, lo=-MAX_PRIORITY, hi=MAX_PRIORITY)

    singleton = None
    spec = _obj(config, "singleton")
    if spec is not None:
        mode = spec.get("mode", "skip")
        if mode not in ("skip", "cancel"):
            raise ValidationError("singleton.mode", "must be skip or cancel", "invalid_choice")
        key = keys.key(_expr(spec.get("key"), "singleton.key"), "singleton")
        singleton = Singleton(key=f"singleton:fn:{fid}:{key}", mode=str(mode))

    return FlowSettings(concurrency=concurrency, throttle=gcra("throttle", "throttle"),
                        rate_limit=gcra("rateLimit", "rate"), idempotency=idempotency,
                        debounce=debounce, batch=batch, priority=priority,
                        singleton=singleton, problems=tuple(keys.problems))


# -- HTTP tasks ----------------------------------------------------------------------------


def for_task(queue: str, *, concurrency: int | None = None,
             concurrency_key: str | None = None, concurrency_limit: int | None = None,
             throttle: Mapping[str, Any] | None = None,
             rate_limit: Mapping[str, Any] | None = None, priority: int | None = None,
             debounce: Mapping[str, Any] | None = None,
             singleton: Mapping[str, Any] | None = None) -> FlowSettings:
    """Flow control of an HTTP task in ``queue``; keys are literal strings.

    ``concurrency`` limits the queue; ``concurrency_key`` + ``concurrency_limit`` a key
    shared with every task and env-scoped function using it. Throttle, rate limit and
    debounce apply per queue, or per their ``key`` when given.
    """
    limits: list[ConcurrencyLimit] = []
    if concurrency is not None:
        limits.append(ConcurrencyLimit(f"queue:{queue}",
                                       _int(concurrency, "concurrency", 1, MAX_CONCURRENCY)))
    if (concurrency_key is None) != (concurrency_limit is None):
        raise ValidationError("concurrency_key" if concurrency_key is None
                              else "concurrency_limit",
                              "concurrency_key and concurrency_limit go together", "missing")
    if concurrency_key is not None and concurrency_limit is not None:
        limits.append(ConcurrencyLimit(
            f"env:{concurrency_key}",
            _int(concurrency_limit, "concurrency_limit", 1, MAX_CONCURRENCY)))

    def scoped(prefix: str, spec: Mapping[str, Any]) -> str:
        key = spec.get("key")
        return f"{prefix}:key:{key}" if key else f"{prefix}:queue:{queue}"

    def gcra(name: str, prefix: str, spec: Mapping[str, Any] | None) -> Gcra | None:
        if spec is None:
            return None
        burst = spec.get("burst")
        return Gcra(key=scoped(prefix, spec),
                    limit=_int(spec.get("limit"), f"{name}.limit", 1, 1_000_000),
                    period_ms=duration_ms(spec.get("period"), f"{name}.period"),
                    burst=1 if burst is None else _int(burst, f"{name}.burst", 1, 10_000))

    debounce_rule = None
    if debounce is not None:
        timeout = debounce.get("timeout")
        debounce_rule = Debounce(
            key=scoped("debounce", debounce),
            period_ms=duration_ms(debounce.get("period"), "debounce.period"),
            timeout_ms=None if timeout is None else duration_ms(timeout, "debounce.timeout"))
    singleton_rule = None
    if singleton is not None:
        mode = singleton.get("mode", "skip")
        if mode not in ("skip", "cancel"):
            raise ValidationError("singleton.mode", "must be skip or cancel", "invalid_choice")
        singleton_rule = Singleton(key=scoped("singleton", singleton), mode=str(mode))
    return FlowSettings(
        concurrency=tuple(limits), throttle=gcra("throttle", "throttle", throttle),
        rate_limit=gcra("rate_limit", "rate", rate_limit), debounce=debounce_rule,
        singleton=singleton_rule,
        priority=0 if priority is None else _int(priority, "priority", -MAX_PRIORITY,
                                                 MAX_PRIORITY))


# -- applying settings to a new run ------------------------------------------------------


def concurrency_key_value(settings: FlowSettings, function_id: str) -> str | None:
    """The evaluated key of a function run's first keyed concurrency limit (shown as the
    run's queue), or None when its limits have no key."""
    for limit in settings.concurrency:
        for prefix in (f"fn:{function_id}:", "env:"):
            if limit.key.startswith(prefix) and limit.key[len(prefix):]:
                return limit.key[len(prefix):][:64]
    return None


def apply_to_new_run(new_run: NewRun, settings: FlowSettings) -> NewRun:
    """Put ``settings`` on ``new_run`` (in place; returned for chaining).

    Sets what the store enforces (``new_run.flow``), the idempotency key unless the run
    already has one, and shifts its RUN items ``priority`` seconds earlier (a negative
    priority delays them).
    """
    new_run.flow = settings.run_flow()
    if settings.idempotency is not None and new_run.idempotency is None:
        scope, key = settings.idempotency
        new_run.idempotency = Idempotency(scope=scope, key=key,
                                          expires_at=new_run.created_at + IDEMPOTENCY_WINDOW)
    if settings.priority:
        for item in new_run.items:
            if item.kind is ItemKind.RUN:
                item.due_at -= timedelta(seconds=settings.priority)
                item.priority = settings.priority
    return new_run
