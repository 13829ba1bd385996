"""Waits: created through apply(), listed by event name or correlation id, resumed once."""

from __future__ import annotations

import asyncio
from typing import Any

from offload.models import ItemKind, StepKind, StepStatus
from offload.store.base import Change, NewItem, NewWait, Resume, StepWrite

from .conftest import T0, at, claim_all, create_run


def _wait(wait_id: str, run_id: str = "r1", **kw: Any) -> NewWait:
    return NewWait(id=wait_id, run_id=run_id, step_id=kw.pop("step_id", "s1"),
                   created_at=T0, **kw)


def _resume(wait_id: str, run_id: str = "r1", output: Any = "evt") -> Resume:
    return Resume(
        wait_id=wait_id, run_id=run_id,
        step=StepWrite(run_id=run_id, id="s1", name="s1", kind=StepKind.WAIT_FOR_EVENT,
                       status=StepStatus.COMPLETED, output=output, ended_at=at(5)),
        item=NewItem(kind=ItemKind.RUN, due_at=at(5), run_id=run_id))


async def test_wait_list__by_event_name(store: Any) -> None:
    await create_run(store, id="r1", item=False)
    await store.apply(Change(waits=[
        _wait("w1", event_name="a", expression="event.data.x == 1", expires_at=at(60),
              trigger={"t": 1}),
        _wait("w2", event_name="a"), _wait("w3", event_name="b")]))
    waits = sorted(await store.wait_list(event_name="a"), key=lambda w: w.id)
    assert [w.id for w in waits] == ["w1", "w2"]
    w1 = waits[0]
    assert (w1.run_id, w1.step_id, w1.event_name, w1.expression, w1.expires_at, w1.trigger,
            w1.correlation_id, w1.created_at) == (
        "r1", "s1", "a", "event.data.x == 1", at(60), {"t": 1}, None, T0)
    assert await store.wait_list(event_name="none") == []


async def test_wait_list__by_correlation_id(store: Any) -> None:
    await create_run(store, id="r1", item=False)
    await store.apply(Change(waits=[_wait("w1", correlation_id="child-1"),
                                    _wait("w2", correlation_id="child-2", event_name="x")]))
    assert [w.id for w in await store.wait_list(correlation_id="child-1")] == ["w1"]
    assert await store.wait_list(correlation_id="nope") == []


async def test_apply__delete_waits_of_runs(store: Any) -> None:
    await store.apply(Change(waits=[_wait("w1", "r1", event_name="a"),
                                    _wait("w2", "r2", event_name="a"),
                                    _wait("w3", "r3", event_name="a")]))
    await store.apply(Change(delete_waits_of_runs=["r1", "r3"]))
    assert [w.id for w in await store.wait_list(event_name="a")] == ["w2"]


async def test_apply__resume_applies_once(store: Any) -> None:
    await create_run(store, id="r1", item=False)
    await store.apply(Change(waits=[_wait("w1", event_name="a")]))
    first = await store.apply(Change(resumes=[_resume("w1", output="first")]))
    assert first.resumed == ["w1"] and first.enqueued == 1
    second = await store.apply(Change(resumes=[_resume("w1", output="second")]))
    assert second.resumed == [] and second.enqueued == 0
    assert await store.wait_list(event_name="a") == []
    run = await store.run_get(run_id="r1")
    assert run is not None and run.steps is not None
    [step] = run.steps
    assert step.status is StepStatus.COMPLETED and step.output == "first"
    assert [(i.kind, i.run_id) for i in await claim_all(store)] == [(ItemKind.RUN, "r1")]


async def test_apply__concurrent_resumes_one_wins(store: Any) -> None:
    await create_run(store, id="r1", item=False)
    await store.apply(Change(waits=[_wait("w1", event_name="a")]))
    results = await asyncio.gather(*(
        store.apply(Change(resumes=[_resume("w1", output=i)])) for i in range(8)))
    assert sum(len(r.resumed) for r in results) == 1
    assert len(await claim_all(store)) == 1


async def test_apply__resume_of_missing_wait_is_noop(store: Any) -> None:
    await create_run(store, id="r1", item=False)
    result = await store.apply(Change(resumes=[_resume("never")]))
    assert result.resumed == [] and await claim_all(store) == []
    run = await store.run_get(run_id="r1")
    assert run is not None and run.steps == []
