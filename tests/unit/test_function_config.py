"""protocol/function_config.py: a function's config parsed once, strictly at sync and
leniently from the store; the engine's readers use the parsed value."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from offload.engine.cron_service import cron_triggers
from offload.engine.triggers import triggered_by, with_controls
from offload.errors import ValidationError
from offload.models import Function, RunError
from offload.protocol.expressions import Expression
from offload.protocol.function_config import (
    DEFAULT_RETRIES,
    MAX_RETRIES,
    FlowConfig,
    FunctionConfig,
    load_function_config,
    parse_function_config,
)
from offload.protocol.messages import INVOKE_TIMEOUT_ERROR
from offload.store import rows
from offload.store.base import NewRun

URL = "http://app.test/api/inngest?fnId=app-fn&stepId=step"
AT = datetime(2030, 1, 1, tzinfo=UTC)

FULL: dict[str, Any] = {
    "id": "app-fn", "name": "fn",
    "triggers": [{"event": "shop/order.*", "expression": "event.data.total > 10"},
                 {"cron": "TZ=Europe/Paris 0 3 * * *", "jitter": "30s"}],
    "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "http", "url": URL},
                       "retries": {"attempts": 7}}},
    "cancel": [{"event": "shop/order.cancelled", "if": "event.data.id == async.data.id",
                "timeout": "1h"}],
    "timeouts": {"start": "10s", "finish": "2m"},
    "concurrency": [{"limit": 2, "key": "event.data.user"}, {"limit": 9, "scope": "account"}],
    "throttle": {"limit": 5, "period": "1m", "burst": 2, "key": "event.data.user"},
    "rateLimit": {"limit": 10, "period": "1h"},
    "idempotency": "event.data.id",
    "debounce": {"period": "5s", "timeout": "1m"},
    "batchEvents": {"maxSize": 50, "timeout": "10s", "if": "event.data.batch"},
    "priority": {"run": "event.data.prio"},
    "singleton": {"key": "event.data.user", "mode": "cancel"},
}


def test_parse__every_part_typed() -> None:
    spec = parse_function_config(FULL)
    assert spec.url == URL and spec.call_url() == URL and spec.step == "step"
    assert spec.retries == 7 and spec.problems == ()
    event, cron = spec.triggers
    assert (event.event, event.expression, event.cron) == ("shop/order.*",
                                                           "event.data.total > 10", None)
    assert event.condition is not None and isinstance(event.condition.expression, Expression)
    assert (cron.cron, cron.jitter) == ("TZ=Europe/Paris 0 3 * * *", "30s")
    assert spec.crons == (cron,)
    (cancel,) = spec.cancel
    assert cancel.event == "shop/order.cancelled" and cancel.timeout == timedelta(hours=1)
    assert cancel.condition is not None and cancel.condition.holds(
        {"event": {"data": {"id": 1}}, "async": {"data": {"id": 1}}})
    assert (spec.start_timeout, spec.finish_timeout) == (timedelta(seconds=10),
                                                         timedelta(minutes=2))
    f = spec.flow
    assert [(c.limit, c.scope, c.key is not None) for c in f.concurrency] == [
        (2, "fn", True), (9, "env", False)]
    assert f.throttle is not None and (f.throttle.limit, f.throttle.period_ms,
                                       f.throttle.burst) == (5, 60_000, 2)
    assert f.rate_limit is not None and (f.rate_limit.period_ms, f.rate_limit.burst) == (
        3_600_000, 1)
    assert f.debounce is not None and (f.debounce.period_ms, f.debounce.timeout_ms) == (
        5000, 60_000)
    assert f.batch is not None and (f.batch.max_size, f.batch.timeout_ms) == (50, 10_000)
    assert f.idempotency is not None and f.priority is not None
    assert f.singleton is not None and f.singleton.mode == "cancel"


def test_parse__defaults_and_caps() -> None:
    minimal = {"triggers": [{"event": "a"}], "steps": {"only": {"runtime": {"url": URL}}}}
    spec = parse_function_config(minimal)
    assert spec.retries == DEFAULT_RETRIES and spec.step == "only"
    assert spec.cancel == () and spec.start_timeout is None and spec.flow == FlowConfig()
    capped = copy.deepcopy(minimal)
    capped["steps"]["only"]["retries"] = {"attempts": 30.0}
    assert parse_function_config(capped).retries == MAX_RETRIES
    numeric = {**minimal, "timeouts": {"start": 5}}  # tolerated at sync, not applied
    assert parse_function_config(numeric).start_timeout is None


def _with(path: str, value: Any) -> dict[str, Any]:
    config = copy.deepcopy(FULL)
    target: Any = config
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    target[int(last) if last.isdigit() else last] = value
    return config


@pytest.mark.parametrize(("path", "value", "field"), [
    ("triggers", [], "fn.triggers"),
    ("triggers.0", {"event": "a", "cron": "* * * * *"}, "fn.triggers[0]"),
    ("triggers.0.expression", 5, "fn.triggers[0].expression"),
    ("triggers.1.jitter", "soon", "fn.triggers[1].jitter"),
    ("steps", {}, "fn.steps"),
    ("steps.step.runtime", None, "fn.steps.step.runtime"),
    ("steps.step.runtime.url", "/relative", "fn.steps.step.runtime.url"),
    ("steps.step.retries.attempts", -1, "fn.steps.step.retries.attempts"),
    ("steps.step.retries", 3, "fn.steps.step.retries"),
    ("cancel.0.event", None, "fn.cancel[0].event"),
    ("cancel.0.timeout", "later", "fn.cancel[0].timeout"),
    ("timeouts.start", "forever", "fn.timeouts.start"),
    ("concurrency", "3", "fn.concurrency"),
    ("concurrency.0.key", "event.data.(", "fn.concurrency[0].key"),
    ("concurrency.1.scope", "galaxy", "fn.concurrency[1].scope"),
    ("throttle.burst", 0, "fn.throttle.burst"),
    ("throttle.period", "8d", "fn.throttle.period"),
    ("rateLimit", 5, "fn.rateLimit"),
    ("idempotency", 5, "fn.idempotency"),
    ("debounce.timeout", -1, "fn.debounce.timeout"),
    ("batchEvents.maxSize", 5000, "fn.batchEvents.maxSize"),
    ("batchEvents.if", "event.(", "fn.batchEvents.if"),
    ("priority.run", "1 +", "fn.priority.run"),
    ("singleton.mode", "queue", "fn.singleton.mode"),
])
def test_parse__an_unusable_value_names_its_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_function_config(_with(path, value), "fn")
    assert info.value.field == field
    assert info.value.message  # the sync answer is "<field>: <message>"


def test_parse__trigger_and_cancel_conditions_are_not_checked_at_sync() -> None:
    spec = parse_function_config(_with("triggers.0.expression", "event.("))
    assert not spec.triggers[0].starts_on({"name": "shop/order.paid", "data": {}})


def test_load__a_stored_config_never_raises_and_keeps_what_parses() -> None:
    spec = load_function_config(_with("throttle.period", "8d"))
    assert spec.flow.throttle is None and spec.flow.rate_limit is not None
    assert spec.problems == ("throttle.period: must be at most 1w",)
    assert load_function_config({"triggers": []}).url is None
    with pytest.raises(ValidationError) as info:
        load_function_config({}).call_url()
    assert info.value.field == "steps.step.runtime.url"
    assert load_function_config("junk").problems == ("config: must be an object",)
    bad_trigger = load_function_config({"triggers": [{"event": "a"}, "x", {"cron": "@daily"}]})
    assert [t.event or t.cron for t in bad_trigger.triggers] == ["a", "@daily"]


def _fn(config: dict[str, Any]) -> Function:
    return Function(id="app-fn", app_id="app", name="fn", config=config, created_at=AT,
                    updated_at=AT, spec=load_function_config(config))


def test_readers_use_the_parsed_config() -> None:
    fn = _fn(FULL)
    assert triggered_by(fn, {"name": "shop/order.paid", "data": {"total": 11}})
    assert not triggered_by(fn, {"name": "shop/order.paid", "data": {"total": 9}})
    assert not triggered_by(fn, {"name": "shop/other", "data": {"total": 11}})
    assert [text for text, _ in cron_triggers(fn)] == ["TZ=Europe/Paris 0 3 * * *"]
    event = {"name": "shop/order.paid", "data": {"user": "u1", "id": "o1", "prio": 30}}
    run = with_controls(NewRun(id="r", function_id=fn.id, created_at=AT), fn, [event])
    assert run.flow is not None and run.flow.throttle is not None
    assert run.flow.throttle.key == "throttle:fn:app-fn:u1"
    assert run.idempotency is not None and run.idempotency.key == "o1"
    assert sorted(i.payload["which"] for i in run.items) == ["finish", "start"]


def test_a_stored_config_is_parsed_once_per_version(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def counting(raw: Any) -> FunctionConfig:
        calls.append(raw)
        return load_function_config(raw)

    monkeypatch.setattr(rows, "load_function_config", counting)
    config = {**FULL, "name": f"once-{id(calls)}"}  # a config text no other test read
    row = ("app-fn", "app", "fn", orjson.dumps(config).decode(), 0, 0)
    first, second = rows.row_function(row), rows.row_function(tuple(row))
    assert first.spec is second.spec and len(calls) == 1
    assert first.config == second.config and first.config is not second.config
    changed = ("app-fn", "app", "fn", orjson.dumps({**config, "retries": 1}).decode(), 0, 1)
    assert rows.row_function(changed).spec is not first.spec and len(calls) == 2


def test_invoke_timeout_error_is_a_run_error() -> None:
    assert isinstance(INVOKE_TIMEOUT_ERROR, RunError)
    assert INVOKE_TIMEOUT_ERROR.name == "InngestInvokeTimeoutError"
    assert RunError.of(INVOKE_TIMEOUT_ERROR) == INVOKE_TIMEOUT_ERROR
