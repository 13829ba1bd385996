"""Alerts: rules evaluated in the background, notifications delivered as signed HTTP tasks.

Four kinds of rule, each about a function, a queue, or everything:

- ``failure_rate``: failed / (completed + failed) of runs that ended in the last
  ``window_s`` seconds is at least ``threshold`` (0 < threshold ≤ 1), once at least
  ``min_runs`` runs ended;
- ``dead_letter_growth``: at least ``threshold`` runs failed (entered the dead-letter
  view) in the last ``window_s`` seconds;
- ``oldest_due``: the oldest due, not started queue item has waited ``threshold``
  seconds or more (items held by a pause do not count);
- ``cron_missed``: a cron function's latest tick older than ``threshold`` seconds
  (the grace) was not fired.

Rules come from settings (``OFFLOAD_ALERT_RULES``, a JSON list; read-only) or from
``/v1/alerts``. Every engine evaluates every ``OFFLOAD_ALERT_EVERY_S`` seconds; a
change of state is a compare-and-set in the store, so when several engines see it
one of them records it. The firing or resolving and its notification — a run of the
built-in ``http`` function in queue :data:`ALERT_QUEUE` — are committed together,
so the notification is signed per Standard Webhooks, retried like any HTTP task,
and survives restarts. Its JSON body has a Slack-compatible ``text`` field.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from offload.clock import now
from offload.engine.background import cancel_and_wait
from offload.engine.cron import ticks_between
from offload.engine.cron_service import cron_triggers
from offload.engine.pause import ops_store
from offload.errors import ConfigError, CronError, StoreError
from offload.ids import new_id
from offload.models import HTTP_FUNCTION_ID, ItemKind
from offload.outbound.ssrf import validate_url
from offload.store.base import NewItem, NewRun, Store
from offload.store.ops import AlertRule, AlertState

log = logging.getLogger("offload.alerts")

ALERT_QUEUE = "offload.alerts"
"""The queue of notification runs (pause it to silence notifications; they are kept)."""
NOTIFY_RETRIES = 10
NOTIFY_TIMEOUT_S = 10.0
Kind = Literal["failure_rate", "dead_letter_growth", "oldest_due", "cron_missed"]
RULE_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"
QUEUE_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"
SETTINGS_PREFIX = "settings:"
"""Ids of rules declared in settings."""


class AlertRuleIn(BaseModel):
    """An alert rule as written in settings or sent to ``/v1/alerts``."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=RULE_NAME, description="Unique name.")]
    kind: Kind
    function_id: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        None, description="Only this function (required for cron_missed).")
    queue: Annotated[str, Field(pattern=QUEUE_NAME)] | None = Field(
        None, description="Only this queue.")
    threshold: float = Field(
        ge=0, le=10_000_000, description="failure_rate: a fraction (0 < t ≤ 1); "
        "dead_letter_growth: failed runs; oldest_due: seconds; cron_missed: grace seconds.")
    window_s: int = Field(300, ge=10, le=30 * 86400,
                          description="Look-back window of failure_rate and "
                                      "dead_letter_growth.")
    min_runs: int = Field(1, ge=1, le=1_000_000,
                          description="failure_rate: fire only once this many runs ended.")
    url: str = Field(max_length=2048, description="Receives the signed notifications "
                                                  "(a Slack incoming webhook works too).")
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from offload.errors import ValidationError as OffloadValidationError

        try:
            validate_url(value)
        except OffloadValidationError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("function_id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise ValueError("must not contain control characters")
        return value

    @model_validator(mode="after")
    def _per_kind(self) -> AlertRuleIn:
        if self.kind == "failure_rate" and not 0 < self.threshold <= 1:
            raise ValueError("threshold: a failure rate is a fraction above 0 and at most 1")
        if self.kind == "dead_letter_growth" and self.threshold < 1:
            raise ValueError("threshold: dead_letter_growth needs at least 1 failed run")
        if self.kind == "cron_missed" and self.function_id is None:
            raise ValueError("function_id: cron_missed needs the cron function's id")
        if self.kind == "cron_missed" and self.queue is not None:
            raise ValueError("queue: cron_missed is about a function, not a queue")
        return self


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule to evaluate, from settings or the store."""

    id: str
    source: str
    spec: AlertRuleIn
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def name(self) -> str:
        """The rule's unique name."""
        return self.spec.name


@dataclass(frozen=True, slots=True)
class Measure:
    """One evaluation: the value, whether it breaches the rule, and why in words."""

    value: float
    firing: bool
    message: str


def settings_rules(raw: str | None) -> list[Rule]:
    """Rules declared in settings (a JSON list); ConfigError names the bad rule and field."""
    if not raw:
        return []
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"OFFLOAD_ALERT_RULES is not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise ConfigError("OFFLOAD_ALERT_RULES must be a JSON list of rules")
    rules: list[Rule] = []
    for i, item in enumerate(items):
        try:
            spec = AlertRuleIn.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "rule"
            raise ConfigError(f"OFFLOAD_ALERT_RULES[{i}].{where}: {first.get('msg')}"
                              ) from None
        if any(r.name == spec.name for r in rules):
            raise ConfigError(f"OFFLOAD_ALERT_RULES[{i}].name: {spec.name!r} is used twice")
        rules.append(Rule(id=SETTINGS_PREFIX + spec.name, source="settings", spec=spec))
    return rules


def stored_rule(rule: AlertRule) -> Rule:
    """A rule from the store."""
    spec = AlertRuleIn.model_validate({**rule.spec, "name": rule.name, "kind": rule.kind,
                                       "url": rule.url, "enabled": rule.enabled})
    return Rule(id=rule.id, source="api", spec=spec, created_at=rule.created_at,
                updated_at=rule.updated_at)


def to_stored(rule_id: str, spec: AlertRuleIn, created_at: datetime, at: datetime
              ) -> AlertRule:
    """The store's record of an API rule."""
    fields = spec.model_dump(exclude={"name", "kind", "url", "enabled"})
    return AlertRule(id=rule_id, name=spec.name, kind=spec.kind, spec=fields, url=spec.url,
                     enabled=spec.enabled, created_at=created_at, updated_at=at)


def _scope(spec: AlertRuleIn) -> str:
    parts = []
    if spec.function_id:
        parts.append(f"function {spec.function_id}")
    if spec.queue:
        parts.append(f"queue {spec.queue}")
    return " in ".join(parts) or "all functions"


def _window(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


async def measure(store: Store, spec: AlertRuleIn, at: datetime) -> Measure:
    """Evaluate one rule now."""
    ops = ops_store(store)
    scope = _scope(spec)
    if spec.kind in ("failure_rate", "dead_letter_growth"):
        counts = await ops.alert_run_counts(since=at - timedelta(seconds=spec.window_s),
                                            function_id=spec.function_id, queue=spec.queue)
        failed = counts.get("failed", 0)
        window = _window(spec.window_s)
        if spec.kind == "dead_letter_growth":
            return Measure(float(failed), failed >= spec.threshold,
                           f"{failed} runs of {scope} failed in the last {window} "
                           f"(alert at {spec.threshold:g})")
        done = failed + counts.get("completed", 0)
        rate = failed / done if done else 0.0
        return Measure(rate, done >= spec.min_runs and rate >= spec.threshold,
                       f"{failed} of {done} runs of {scope} failed in the last {window} "
                       f"({rate:.0%}; alert at {spec.threshold:.0%})")
    if spec.kind == "oldest_due":
        oldest = await ops.alert_oldest_due(now=at, function_id=spec.function_id,
                                            queue=spec.queue)
        age = max(0.0, (at - oldest).total_seconds()) if oldest else 0.0
        return Measure(age, oldest is not None and age >= spec.threshold,
                       f"the oldest due item of {scope} has waited {age:.0f} s "
                       f"(alert at {spec.threshold:g} s)")
    return await _cron_missed(store, spec, at)


async def _cron_missed(store: Store, spec: AlertRuleIn, at: datetime) -> Measure:
    assert spec.function_id is not None
    fn = await store.function_get(function_id=spec.function_id)
    if fn is None:
        return Measure(0.0, False, f"function {spec.function_id} is not synced")
    deadline = at - timedelta(seconds=spec.threshold)
    expected: datetime | None = None
    for _, schedule in cron_triggers(fn):
        try:
            found = ticks_between(schedule, fn.created_at, deadline, 1, newest=True)
        except CronError:
            continue
        if found and (expected is None or found[-1] > expected):
            expected = found[-1]
    if expected is None:
        return Measure(0.0, False, f"cron function {fn.id} has no tick due yet")
    last = await store.cron_last_tick(function_id=fn.id)
    late = (at - expected).total_seconds()
    if last is not None and last >= expected:
        return Measure(0.0, False, f"cron function {fn.id} fired its tick of "
                                   f"{expected.isoformat()}")
    return Measure(late, True, f"cron function {fn.id} did not fire its tick of "
                               f"{expected.isoformat()} ({late:.0f} s ago; grace "
                               f"{spec.threshold:g} s)")


def notification(rule: Rule, status: str, value: float, message: str, at: datetime,
                 dashboard_url: str | None = None) -> NewRun:
    """The HTTP-task run that posts a firing or resolving to the rule's URL."""
    spec = rule.spec
    word = "FIRING" if status == "firing" else "RESOLVED"
    mark = ":red_circle:" if status == "firing" else ":large_green_circle:"
    body = {
        "type": f"offload.alert.{'firing' if status == 'firing' else 'resolved'}",
        "status": "firing" if status == "firing" else "resolved",
        "text": f"{mark} [offload] {word}: {spec.name} — {message}",
        "rule": {"id": rule.id, "name": spec.name, "kind": spec.kind,
                 "function_id": spec.function_id, "queue": spec.queue,
                 "threshold": spec.threshold, "window_s": spec.window_s},
        "value": value, "message": message, "at": at.isoformat(),
        "dashboard_url": dashboard_url,
    }
    task = {"url": spec.url, "method": "POST", "headers": {}, "body": body,
            "body_kind": "json", "callback_url": None, "failure_callback_url": None,
            "retries": NOTIFY_RETRIES, "timeout_s": NOTIFY_TIMEOUT_S, "queue": ALERT_QUEUE,
            "flow": {}}
    return NewRun(id=new_id(), function_id=HTTP_FUNCTION_ID, created_at=at, input=task,
                  queue=ALERT_QUEUE, correlation_id=f"alert:{rule.id}",
                  items=[NewItem(kind=ItemKind.RUN, due_at=at, queue=ALERT_QUEUE)])


async def all_rules(store: Store, declared: list[Rule]) -> list[Rule]:
    """Rules from settings, then the stored ones, by name."""
    stored = [stored_rule(r) for r in await ops_store(store).alert_rule_list()]
    return sorted([*declared, *stored], key=lambda r: r.name)


def rule_json(rule: Rule, state: AlertState | None) -> dict[str, Any]:
    """A rule and its current state as the API shows it."""
    return {
        "id": rule.id, "source": rule.source, **rule.spec.model_dump(),
        "created_at": rule.created_at.isoformat() if rule.created_at else None,
        "updated_at": rule.updated_at.isoformat() if rule.updated_at else None,
        "state": {"status": state.status if state else "pending",
                  "since": state.since.isoformat() if state else None,
                  "value": state.value if state else None,
                  "message": state.message if state else None,
                  "evaluated_at": state.evaluated_at.isoformat() if state else None},
    }


class Alerts:
    """Evaluates every rule every ``every`` in the background (on every engine)."""

    def __init__(self, store: Store, *, declared: list[Rule], every: timedelta,
                 dashboard_url: str | None = None) -> None:
        self.store = store
        self.declared = declared
        self.every = every
        self.dashboard_url = dashboard_url
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the background loop."""
        self._task = asyncio.create_task(self._loop(), name="offload-alerts")

    async def stop(self) -> None:
        """Stop the loop."""
        await cancel_and_wait(self._task)

    async def evaluate_once(self) -> int:
        """Evaluate every enabled rule; the number of firings and resolvings recorded."""
        ops = ops_store(self.store)
        changes = 0
        for rule in await all_rules(self.store, self.declared):
            if not rule.spec.enabled:
                continue
            at = now()
            try:
                m = await measure(self.store, rule.spec, at)
            except StoreError:
                raise
            except Exception:  # noqa: BLE001 - one bad rule must not stop the others
                log.exception("alert rule could not be evaluated", extra={"rule": rule.name})
                continue
            status = "firing" if m.firing else "ok"
            event = await ops.alert_transition(
                rule_id=rule.id, rule_name=rule.name, status=status, value=m.value,
                message=m.message, at=at,
                notify=notification(rule, status, m.value, m.message, at,
                                    self.dashboard_url))
            if event is not None:
                changes += 1
                log.warning("alert %s", event.status, extra={
                    "rule": rule.name, "value": m.value, "run_id": event.run_id,
                    "detail": m.message})
        await ops.pause_sweep()
        return changes

    async def _loop(self) -> None:
        while True:
            try:
                await self.evaluate_once()
            except StoreError as exc:
                log.warning("alert evaluation failed", extra={"error": str(exc)})
            except Exception:  # noqa: BLE001 - the loop must outlive any one bug
                log.exception("alert evaluation failed")
            await asyncio.sleep(self.every.total_seconds())
