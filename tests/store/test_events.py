"""Events: stored through apply(), deduplicated by external id, fanned out, listed."""

from __future__ import annotations

import asyncio
from typing import Any

from offload.ids import new_id
from offload.models import ItemKind
from offload.store.base import Change, NewEvent

from .conftest import T0, at, claim_all, count


def _event(name: str = "user.created", *, id: str | None = None, received: float = 0,
           **kw: Any) -> NewEvent:
    return NewEvent(id=id or new_id(), name=name, data=kw.pop("data", {"n": 1}), ts=123,
                    received_at=at(received), **kw)


async def test_apply__event_stored(store: Any) -> None:
    result = await store.apply(Change(events=[_event(id="e1", user={"u": 1},
                                                     external_id="x")]))
    [(event, created)] = result.events
    assert created and event.id == "e1"
    stored = await store.event_get(event_id="e1")
    assert stored == event
    assert (stored.name, stored.data, stored.ts, stored.received_at, stored.user,
            stored.external_id) == ("user.created", {"n": 1}, 123, T0, {"u": 1}, "x")
    assert await store.event_get(event_id="nope") is None


async def test_apply__event_external_id_dedupe(store: Any) -> None:
    await store.apply(Change(events=[_event(id="e1", external_id="x", data={"v": 1})]))
    result = await store.apply(Change(events=[_event(id="e2", external_id="x",
                                                     data={"v": 2})]))
    [(event, created)] = result.events
    assert created is False and event.id == "e1" and event.data == {"v": 1}
    assert result.enqueued == 0
    assert await store.event_get(event_id="e2") is None
    assert await count(store, "queue_items") == 1
    # without an external id nothing is deduplicated
    await store.apply(Change(events=[_event(id="e3"), _event(id="e4")]))
    assert await count(store, "events") == 3


async def test_apply__event_external_id_dedupe_concurrent(store: Any) -> None:
    results = await asyncio.gather(*(
        store.apply(Change(events=[_event(id=f"e{i}", external_id="same")]))
        for i in range(10)), return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    created = [r.events[0][0].id for r in results if r.events[0][1]]
    assert len(created) == 1
    assert {r.events[0][0].id for r in results} == set(created)
    assert await count(store, "events") == 1
    assert await count(store, "queue_items") == 1


async def test_apply__event_fanout_creates_event_item(store: Any) -> None:
    result = await store.apply(Change(events=[_event(id="e1", received=5),
                                              _event(id="e2", fanout=False)]))
    assert result.enqueued == 1
    [item] = await claim_all(store)
    assert (item.kind, item.payload, item.due_at, item.run_id) == (
        ItemKind.EVENT, {"event_id": "e1"}, at(5), None)


async def test_event_list__newest_first_with_filters_and_cursor(store: Any) -> None:
    ids = [new_id() for _ in range(7)]
    await store.apply(Change(events=[
        _event("a" if i % 2 else "b", id=event_id, received=i * 10, fanout=False)
        for i, event_id in enumerate(ids)]))
    page = await store.event_list(name=None, after=None, before=None, cursor=None, limit=100)
    assert [e.id for e in page.data] == ids[::-1] and page.next_cursor is None
    named = await store.event_list(name="a", after=None, before=None, cursor=None, limit=100)
    assert [e.id for e in named.data] == [ids[5], ids[3], ids[1]]
    ranged = await store.event_list(name=None, after=at(20), before=at(50), cursor=None,
                                    limit=100)
    assert [e.id for e in ranged.data] == [ids[4], ids[3], ids[2]]
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.event_list(name=None, after=None, before=None, cursor=cursor,
                                      limit=3)
        seen.extend(e.id for e in page.data)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids[::-1]
