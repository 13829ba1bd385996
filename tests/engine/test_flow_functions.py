"""Durable functions' flow control through the trigger code itself: SDK config and event
-> ``triggers.new_run_for`` (``flow.for_function`` and timeouts) -> ``store.apply``.
Both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from offload.engine.triggers import new_run_for
from offload.ids import new_id, new_token
from offload.models import Event, Function, RunStatus
from offload.protocol.function_config import load_function_config
from offload.store.base import Change, NewEvent

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def trigger(store: Any, config: dict[str, Any], data: dict[str, Any],
                  when: float) -> tuple[Any, str]:
    """One event of ``app/ev`` starting ``config``'s function, through the trigger code."""
    event = Event(id=new_id(), name="app/ev", data=data, ts=0, received_at=at(when), user={})
    fn = Function(id="app-fn", app_id="app", name="fn", config=config, created_at=T0,
                  updated_at=T0, spec=load_function_config(config))
    result = await store.apply(Change(
        events=[NewEvent(id=event.id, name=event.name, data=data, ts=0,
                         received_at=event.received_at, fanout=False)],
        runs=[new_run_for(fn, event, at(when))]))
    (stored, _), outcome = result.runs[0], result.outcomes[0]
    return stored, outcome


async def claim(store: Any, now: datetime) -> list[Any]:
    return await store.queue_claim(owner="e", token=new_token(), now=now, limit=100,
                                   lease_until=now + timedelta(seconds=30))


async def test_batch_events_become_one_run_with_the_event_list(store: Any) -> None:
    config = {"batchEvents": {"maxSize": 3, "timeout": "10s", "key": "event.data.user"}}
    runs = [await trigger(store, config, {"user": u, "n": i}, i)
            for i, u in enumerate(["a", "b", "a", "a", "b"])]
    assert [o for _, o in runs] == ["created", "created", "batched", "batched", "batched"]
    first = await store.run_get(run_id=runs[0][0].id, with_steps=False)
    assert len(first.event_ids) == 3
    events = await store.event_get_many(event_ids=first.event_ids)
    assert [e.data["n"] for e in events] == [0, 2, 3]
    got = await claim(store, at(3))  # a's batch is full: due at once
    assert [i.run_id for i in got] == [runs[0][0].id]
    got = await claim(store, at(11))  # b's batch waits for its timeout (first event + 10 s)
    assert [i.run_id for i in got] == [runs[1][0].id]


async def test_debounce_starts_once_with_the_last_event(store: Any) -> None:
    config = {"debounce": {"period": "5s", "key": "event.data.user"}}
    first, _ = await trigger(store, config, {"user": "a", "n": 0}, 0)
    for i in range(1, 4):
        again, outcome = await trigger(store, config, {"user": "a", "n": i}, i)
        assert outcome == "debounced" and again.id == first.id
    assert await claim(store, at(7)) == []
    [item] = await claim(store, at(8))
    run = await store.run_get(run_id=first.id, with_steps=False)
    events = await store.event_get_many(event_ids=run.event_ids)
    assert item.run_id == first.id and [e.data["n"] for e in events] == [3]


async def test_fn_scoped_concurrency_and_singleton(store: Any) -> None:
    config = {"concurrency": [{"limit": 1, "key": "event.data.user"}]}
    runs = [(await trigger(store, config, {"user": u}, i))[0] for i, u in
            enumerate(["a", "a", "b"])]
    got = await claim(store, at(5))
    assert sorted(i.run_id for i in got) == sorted([runs[0].id, runs[2].id])
    single = {"singleton": {"key": "event.data.user", "mode": "skip"}}
    kept, _ = await trigger(store, single, {"user": "z"}, 0)
    skipped, outcome = await trigger(store, single, {"user": "z"}, 1)
    assert outcome == "skipped" and skipped.status is RunStatus.CANCELLED
    assert (await store.run_get(run_id=kept.id, with_steps=False)).status is RunStatus.QUEUED


async def test_idempotency_and_rate_limit(store: Any) -> None:
    config = {"idempotency": "event.data.order"}
    one, o1 = await trigger(store, config, {"order": 7}, 0)
    two, o2 = await trigger(store, config, {"order": 7}, 1)
    assert (o1, o2) == ("created", "duplicate") and one.id == two.id
    limited = {"rateLimit": {"limit": 2, "period": "1m", "key": "event.data.user"}}
    outcomes = [(await trigger(store, limited, {"user": "u"}, i))[1] for i in range(4)]
    assert outcomes == ["created", "created", "rate_limited", "rate_limited"]
