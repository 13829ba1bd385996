"""engine/flow.py: parsed function flow configs and task fields become one FlowSettings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from offload.engine import flow
from offload.errors import ValidationError
from offload.models import ItemKind
from offload.protocol.function_config import parse_flow
from offload.store.base import (
    Batch,
    ConcurrencyLimit,
    Debounce,
    Gcra,
    NewItem,
    NewRun,
    Singleton,
)

EVENT = {"name": "app/order", "data": {"user": "u1", "prio": 120, "tier": "gold", "id": "o-9"}}
AT = datetime(2030, 1, 1, tzinfo=UTC)


def _fn(**config: Any) -> flow.FlowSettings:
    return flow.for_function(parse_flow(config), [EVENT], "app-fn")


def test_for_function__empty_config_changes_nothing() -> None:
    settings = _fn()
    assert settings == flow.FlowSettings()
    assert settings.run_flow() is None


def test_for_function__concurrency_int_list_and_scopes() -> None:
    assert _fn(concurrency=3).concurrency == (ConcurrencyLimit("fn:app-fn:", 3),)
    settings = _fn(concurrency=[{"limit": 2, "key": "event.data.user"},
                                {"limit": 10, "key": '"stripe"', "scope": "env"}])
    assert settings.concurrency == (ConcurrencyLimit("fn:app-fn:u1", 2),
                                    ConcurrencyLimit("env:stripe", 10))
    assert _fn(concurrency=[{"limit": 0}]).concurrency == ()  # 0 = unlimited
    assert _fn(concurrency=[{"limit": 1, "scope": "account", "key": "'x'"}]).concurrency == (
        ConcurrencyLimit("env:x", 1),)


def test_for_function__a_task_key_and_an_env_key_are_one_limit() -> None:
    task = flow.for_task("q", concurrency_key="stripe", concurrency_limit=5)
    fn = _fn(concurrency=[{"limit": 5, "key": "'stripe'", "scope": "env"}])
    assert task.concurrency[0].key == fn.concurrency[0].key


def test_for_function__throttle_rate_limit_debounce_batch_singleton() -> None:
    settings = _fn(throttle={"limit": 5, "period": "1m", "burst": 2, "key": "event.data.user"},
                   rateLimit={"limit": 10, "period": "1h"},
                   debounce={"period": "5s", "key": "event.data.user", "timeout": "1m"},
                   batchEvents={"maxSize": 50, "timeout": "10s", "key": "event.data.tier"},
                   singleton={"key": "event.data.user", "mode": "cancel"})
    assert settings.throttle == Gcra("throttle:fn:app-fn:u1", 5, 60_000, 2)
    assert settings.rate_limit == Gcra("rate:fn:app-fn:", 10, 3_600_000, 1)
    assert settings.debounce == Debounce("debounce:fn:app-fn:u1", 5000, 60_000)
    assert settings.batch == Batch("batch:fn:app-fn:gold", 50, 10_000)
    assert settings.singleton == Singleton("singleton:fn:app-fn:u1", "cancel")


def test_for_function__batch_if_false_runs_alone() -> None:
    assert _fn(batchEvents={"maxSize": 5, "timeout": "1s",
                            "if": "event.data.tier == 'basic'"}).batch is None


def test_for_function__priority_clamped_and_idempotency() -> None:
    assert _fn(priority={"run": "event.data.prio"}).priority == 120
    assert _fn(priority={"run": "event.data.prio * 100"}).priority == 600
    assert _fn(priority={"run": "event.data.missing"}).priority == 0
    assert _fn(idempotency="event.data.id").idempotency == ("fn:app-fn", "o-9")


def test_for_function__failing_keys_share_one_key_but_never_idempotency() -> None:
    settings = _fn(concurrency=[{"limit": 1, "key": "event.data.nope"}],
                   idempotency="event.data.nope")
    assert settings.concurrency == (ConcurrencyLimit("fn:app-fn:", 1),)
    assert settings.idempotency is None
    assert len(settings.problems) == 2


@pytest.mark.parametrize(("config", "field"), [
    ({"concurrency": "3"}, "concurrency"),
    ({"concurrency": [{"limit": 1}] * 3}, "concurrency"),
    ({"concurrency": [{"limit": -1}]}, "concurrency[0].limit"),
    ({"concurrency": [{"limit": 1, "scope": "galaxy"}]}, "concurrency[0].scope"),
    ({"concurrency": [{"limit": 1, "key": "event.data.("}]}, "concurrency[0].key"),
    ({"throttle": {"limit": 1, "period": "soon"}}, "throttle.period"),
    ({"rateLimit": {"period": "1s"}}, "rateLimit.limit"),
    ({"debounce": {"period": "8d"}}, "debounce.period"),
    ({"batchEvents": {"maxSize": 0, "timeout": "1s"}}, "batchEvents.maxSize"),
    ({"singleton": {"mode": "queue"}}, "singleton.mode"),
])
def test_parse_flow__names_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_flow(config)
    assert info.value.field == field


def test_for_task__keys_are_literal_and_scoped_to_the_queue() -> None:
    settings = flow.for_task("emails", concurrency=4, throttle={"limit": 2, "period": 1},
                             rate_limit={"limit": 9, "period": "1m", "key": "acme"},
                             debounce={"period": "2s"}, priority=-30)
    assert settings.concurrency == (ConcurrencyLimit("queue:emails", 4),)
    assert settings.throttle == Gcra("throttle:queue:emails", 2, 1000, 1)
    assert settings.rate_limit == Gcra("rate:key:acme", 9, 60_000, 1)
    assert settings.debounce == Debounce("debounce:queue:emails", 2000, None)
    assert settings.priority == -30
    with pytest.raises(ValidationError) as info:
        flow.for_task("q", concurrency_key="k")
    assert info.value.field == "concurrency_limit"


def test_apply_to_new_run__priority_idempotency_and_flow() -> None:
    run = NewRun(id="r", function_id="f", created_at=AT, items=[
        NewItem(kind=ItemKind.RUN, due_at=AT), NewItem(kind=ItemKind.CALLBACK, due_at=AT)])
    settings = _fn(priority={"run": "event.data.prio"}, idempotency="event.data.id",
                   concurrency=2)
    flow.apply_to_new_run(run, settings)
    assert run.items[0].due_at == AT - timedelta(seconds=120) and run.items[0].priority == 120
    assert run.items[1].due_at == AT
    assert run.idempotency is not None and run.idempotency.key == "o-9"
    assert run.idempotency.expires_at == AT + timedelta(hours=24)
    assert run.flow is not None and run.flow.concurrency == [ConcurrencyLimit("fn:app-fn:", 2)]


def test_duration_ms__strings_and_seconds() -> None:
    assert flow.duration_ms("1m30s", "p") == 90_000
    assert flow.duration_ms(2.5, "p") == 2500
    with pytest.raises(ValidationError):
        flow.duration_ms(True, "p")
    with pytest.raises(ValidationError):
        flow.duration_ms("0s", "p")
