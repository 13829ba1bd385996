"""The cost of a durable-function call on the store (issue 10), and what skipping the
lifecycle fan-out must still deliver.

* PostgreSQL: each call to the app, from claimed item to committed outcome, makes at
  most 2 round trips (the claim carries the run, its steps and trigger events; the
  outcome is one round trip), counted on the wire by a proxy.
* ``inngest/function.finished`` of a run nobody listens to queues no fan-out; a
  function triggered by it still starts, and a wait for it is still resumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from offload.app import create_app
from offload.clock import now
from offload.models import ItemKind, RunStatus
from offload.protocol.messages import FUNCTION_FINISHED_EVENT
from offload.store.base import Change, Fence, NewEvent, NewItem, NewRun, NewWait
from tests.support.fake_app import FakeCtx
from tests.support.inprocess import InProcessEngine, in_process_engine
from tests.support.pg_wire import RoundTripCounter


def _three_steps(eng: InProcessEngine) -> None:
    @eng.app.function("three")
    def three(ctx: FakeCtx) -> Any:
        a = ctx.run("one", lambda: 1)
        b = ctx.run("two", lambda: a + 1)
        return ctx.run("three", lambda: {"a": a, "b": b})


@pytest.fixture
def counted_postgres(postgres_url: str) -> Iterator[RoundTripCounter]:
    counter = RoundTripCounter(postgres_url).start()
    yield counter
    counter.stop()


async def test_postgres__at_most_two_round_trips_per_call(
        tmp_path: Path, counted_postgres: RoundTripCounter) -> None:
    counter = counted_postgres
    async with in_process_engine(tmp_path, counter.url) as eng:
        _three_steps(eng)
        await eng.sync(eng.app.config("three", triggers=[{"event": "t/go"}]))
        executor = eng.engine.executor
        assert executor is not None
        calls: list[int] = []
        attempt = executor.run_attempt

        async def counted(item: Any, run: Any) -> None:
            before = counter.round_trips
            await attempt(item, run)
            calls.append(counter.round_trips - before)

        executor.run_attempt = counted  # type: ignore[method-assign]
        fan_outs: list[str] = []
        assert eng.engine.triggers is not None
        fan_out = eng.engine.triggers.fan_out

        async def counted_fan_out(item: Any) -> None:
            fan_outs.append(str(item.payload.get("event_id")))
            await fan_out(item)

        eng.engine.triggers.fan_out = counted_fan_out  # type: ignore[method-assign]
        for n in range(3):
            [run] = await eng.runs_of(await eng.send("t/go", {"n": n}))
            done = await eng.run(run.id)
            assert done.status is RunStatus.COMPLETED, done
            assert done.output == {"a": 1, "b": 2}
    assert len(calls) == 12  # 4 calls a run: discovery-and-step ×3, then the return
    assert 1 <= min(calls) and max(calls) <= 2, calls  # 1: the commit; 2: + a function list read
    # Only the three trigger events fanned out: function.finished had no listener.
    assert len(fan_outs) == 3, fan_outs


async def test_a_function_triggered_by_function_finished_still_runs(
        tmp_path: Path, store_url: str) -> None:
    async with in_process_engine(tmp_path, store_url) as eng:
        _three_steps(eng)

        @eng.app.function("after")
        def after(ctx: FakeCtx) -> Any:
            return {"saw": ctx.event["data"].get("function_id")}

        await eng.sync(eng.app.config("three", triggers=[{"event": "t/go"}]),
                       eng.app.config("after", triggers=[{
                           "event": FUNCTION_FINISHED_EVENT,
                           "expression": "event.data.function_id == 'three'"}]))
        [run] = await eng.runs_of(await eng.send("t/go"))
        assert (await eng.run(run.id)).status is RunStatus.COMPLETED
        finished = (await eng.store.run_list(filter=_by_function("after"), cursor=None,
                                             limit=10)).data
        assert len(finished) == 1 and finished[0].status is RunStatus.COMPLETED, finished
        assert finished[0].output == {"saw": "three"}


def _by_function(function_id: str) -> Any:
    from offload.store.base import RunFilter

    return RunFilter(function_id=function_id)


async def _event_items(store: Any) -> int:
    due = await store.queue_claim(owner="probe", token="probe", now=now() + timedelta(hours=1),
                                  limit=100, lease_until=now() + timedelta(hours=2),
                                  kinds=(ItemKind.EVENT,))
    return len(due)


async def test_store__fanout_if_waited_queues_only_when_a_wait_exists(store: Any) -> None:
    at = now()

    def finished(event_id: str) -> NewEvent:
        return NewEvent(id=event_id, name=FUNCTION_FINISHED_EVENT, data={}, ts=0,
                        received_at=at, fanout_if_waited=True)

    await store.apply(Change(events=[finished("e1")]))
    assert await _event_items(store) == 0
    await store.apply(Change(runs=[NewRun(id="r1", function_id="f", created_at=at)]))
    await store.apply(Change(waits=[NewWait(id="w1", run_id="r1", step_id="s",
                                            created_at=at, event_name=FUNCTION_FINISHED_EVENT)]))
    await store.apply(Change(events=[finished("e2")]))
    assert await _event_items(store) == 1
    # The same inside a fenced change (PostgreSQL: the one-round-trip commit).
    await store.apply(Change(items=[NewItem(kind=ItemKind.BULK, due_at=at)]))
    [item] = await store.queue_claim(owner="o", token="t", now=at + timedelta(seconds=1),
                                     limit=10, lease_until=at + timedelta(minutes=1),
                                     kinds=(ItemKind.BULK,))
    await store.apply(Change(fence=Fence(item.id, "t"), events=[finished("e3")]))
    assert await _event_items(store) == 1
    await store.apply(Change(delete_waits_of_runs=["r1"]))
    await store.apply(Change(events=[finished("e4")]))
    assert await _event_items(store) == 0


async def test_postgres__post_e_is_one_round_trip(
        tmp_path: Path, counted_postgres: RoundTripCounter) -> None:
    """``POST /e/{key}`` with one event commits the event, its fan-out item and the
    wake-up in one round trip (was 5: BEGIN, 2 INSERTs, NOTIFY, COMMIT); a repeated
    external id still answers the first event's id and queues nothing more."""
    counter = counted_postgres
    key = "evkey-round-trips-0123456789"
    async with in_process_engine(tmp_path, counter.url, event_keys=(key,)) as eng:
        await eng.sync(eng.app.config("three", triggers=[{"event": "t/go"}]))
        app = create_app(eng.engine.settings, engine=eng.engine, run_scheduler=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://offload") as client:
            trips: list[int] = []
            ids: list[str] = []
            for body in ({"name": "t/go", "data": {"n": 1}},
                         {"name": "t/go", "data": {}, "id": "ext-1"},
                         {"name": "t/go", "data": {}, "id": "ext-1"}):
                before = counter.round_trips
                response = await client.post(f"/e/{key}", json=body)
                trips.append(counter.round_trips - before)
                assert response.status_code == 200, response.text
                [event_id] = response.json()["ids"]
                ids.append(event_id)
        assert trips[:2] == [1, 1], trips  # a new event: one statement
        assert ids[1] == ids[2]  # the repeat answers the stored event's id
        assert await _event_items(eng.store) == 2  # one fan-out item per new event
