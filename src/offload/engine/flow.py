"""Flow control settings: one shape for durable functions and HTTP tasks.

:func:`for_function` evaluates a synced function's flow control (Inngest's
``concurrency``, ``throttle``, ``rateLimit``, ``idempotency``, ``debounce``,
``batchEvents``, ``priority``, ``singleton``, parsed once into a
:class:`~offload.protocol.function_config.FlowConfig` with its keys compiled) over the
triggering event(s); :func:`for_task` reads an HTTP task's fields. Both give a
:class:`FlowSettings` with every key already evaluated, and :func:`apply_to_new_run`
puts it on the :class:`NewRun` the store enforces (``store/admission.py``). Everything
here is pure: no I/O, no clock.

Keys. Function keys are CEL expressions over ``{"event": event}``; task keys are
literal strings. Concurrency keys share one namespace: a function's ``scope: "env"``
key ``"stripe"`` and a task's ``concurrency_key: "stripe"`` are the same limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from offload.errors import ExpressionError, ValidationError
from offload.models import ItemKind
from offload.protocol.durations import duration_ms
from offload.protocol.expressions import Expression, evaluate_int, evaluate_key
from offload.protocol.function_config import MAX_CONCURRENCY, FlowConfig, GcraRule
from offload.protocol.function_config import int_in as _int
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
    "MAX_CONCURRENCY",
    "MAX_PRIORITY",
    "FlowSettings",
    "apply_to_new_run",
    "duration_ms",
    "for_function",
    "for_task",
]

IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_PRIORITY = 600
"""Priority is a head start in seconds, within [-600, 600]."""


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


# -- durable functions -----------------------------------------------------------------


class _Keys:
    """Evaluates key expressions over one event, remembering failures."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.variables = {"event": dict(event)}
        self.problems: list[str] = []

    def key(self, expression: Expression | None, field_name: str) -> str:
        if expression is None:
            return ""
        try:
            return evaluate_key(expression, self.variables)
        except ExpressionError as exc:
            self.problems.append(f"{field_name}: {exc}")
            return ""


def for_function(config: FlowConfig, events: Sequence[Mapping[str, Any]],
                 function_id: str) -> FlowSettings:
    """Flow control for a run of ``function_id`` triggered by ``events`` (the first one
    decides the keys).

    Events are payloads as the SDK sees them (``Event.as_payload()``); ``config`` is the
    function's parsed flow control (``Function.spec.flow``). A key expression that fails
    (say, a missing field) falls back to the shared key ``""``, except the idempotency
    key, which then does not apply.
    """
    keys = _Keys(events[0] if events else {})
    fid = function_id

    concurrency = tuple(
        ConcurrencyLimit(f"fn:{fid}:{keys.key(rule.key, 'concurrency.key')}"
                         if rule.scope == "fn"
                         else f"env:{keys.key(rule.key, 'concurrency.key')}", rule.limit)
        for rule in config.concurrency)

    def gcra(rule: GcraRule | None, name: str, prefix: str) -> Gcra | None:
        if rule is None:
            return None
        return Gcra(key=f"{prefix}:fn:{fid}:{keys.key(rule.key, name)}", limit=rule.limit,
                    period_ms=rule.period_ms, burst=rule.burst)

    idempotency = None
    if config.idempotency is not None:
        try:
            idempotency = (f"fn:{fid}", evaluate_key(config.idempotency, keys.variables))
        except ExpressionError as exc:
            keys.problems.append(f"idempotency: {exc}")

    debounce = None
    if config.debounce is not None:
        rule = config.debounce
        debounce = Debounce(key=f"debounce:fn:{fid}:{keys.key(rule.key, 'debounce')}",
                            period_ms=rule.period_ms, timeout_ms=rule.timeout_ms)

    batch = None
    if config.batch is not None:
        spec = config.batch
        if spec.condition is None or spec.condition.matches(keys.variables):
            batch = Batch(key=f"batch:fn:{fid}:{keys.key(spec.key, 'batch')}",
                          max_size=spec.max_size, timeout_ms=spec.timeout_ms)

    priority = 0
    if config.priority is not None:
        priority = evaluate_int(config.priority, keys.variables, lo=-MAX_PRIORITY,
                                hi=MAX_PRIORITY)

    singleton = None
    if config.singleton is not None:
        key = keys.key(config.singleton.key, "singleton")
        singleton = Singleton(key=f"singleton:fn:{fid}:{key}", mode=config.singleton.mode)

    return FlowSettings(concurrency=concurrency,
                        throttle=gcra(config.throttle, "throttle", "throttle"),
                        rate_limit=gcra(config.rate_limit, "rateLimit", "rate"),
                        idempotency=idempotency, debounce=debounce, batch=batch,
                        priority=priority, singleton=singleton,
                        problems=tuple(keys.problems))


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
