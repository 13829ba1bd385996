"""The queue: claims, release, depth and the next due time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from offload.ids import new_token
from offload.models import ItemKind, RunStatus
from offload.store.base import Change, Fence, NewItem, RunPatch

from .conftest import FAR, at, claim_all, claim_one, create_run, new_run


def _item(due: float, kind: ItemKind = ItemKind.EVENT, **kw: Any) -> NewItem:
    return NewItem(kind=kind, due_at=at(due), **kw)


async def _claim(store: Any, now: Any, limit: int = 100, **kw: Any) -> list[Any]:
    return await store.queue_claim(owner="engine-1", token=new_token(), now=now, limit=limit,
                                   lease_until=now + timedelta(seconds=30), **kw)


async def test_queue_claim__due_items_only(store: Any) -> None:
    await store.apply(Change(items=[_item(0, id="a"), _item(10, id="b"), _item(20, id="c")]))
    assert await _claim(store, at(-1)) == []
    assert [i.id for i in await _claim(store, at(10))] == ["a", "b"]  # due_at <= now
    assert await _claim(store, at(19)) == []
    assert [i.id for i in await _claim(store, at(20))] == ["c"]


async def test_queue_claim__earliest_first_and_limit(store: Any) -> None:
    await store.apply(Change(items=[_item(30, id="c"), _item(10, id="a"), _item(20, id="b"),
                                    _item(40, id="d")]))
    assert [i.id for i in await _claim(store, FAR, limit=2)] == ["a", "b"]
    assert [i.id for i in await _claim(store, FAR, limit=1)] == ["c"]
    assert [i.id for i in await _claim(store, FAR, limit=5)] == ["d"]
    assert await _claim(store, FAR) == []


async def test_queue_claim__sets_lease_fields(store: Any) -> None:
    await store.apply(Change(items=[_item(0, id="a", queue="q", priority=3,
                                          payload={"p": 1}, concurrency_key="ck")]))
    token = new_token()
    [item] = await store.queue_claim(owner="o", token=token, now=at(1), limit=1,
                                     lease_until=at(31))
    assert (item.id, item.kind, item.queue, item.priority, item.payload, item.concurrency_key,
            item.lease_token, item.lease_expires_at, item.expiries, item.due_at) == (
        "a", ItemKind.EVENT, "q", 3, {"p": 1}, "ck", token, at(31), 0, at(0))


async def test_queue_claim__respects_kinds(store: Any) -> None:
    await store.apply(Change(items=[_item(0, ItemKind.EVENT, id="e"),
                                    _item(1, ItemKind.CALLBACK, id="c"),
                                    _item(2, ItemKind.WAIT_TIMEOUT, id="w")]))
    await create_run(store, id="r1", created_at=at(3))
    got = await _claim(store, FAR, kinds=(ItemKind.CALLBACK, ItemKind.RUN))
    assert [(i.id, i.kind) for i in got][0] == ("c", ItemKind.CALLBACK)
    assert [i.kind for i in got] == [ItemKind.CALLBACK, ItemKind.RUN]
    assert [i.id for i in await _claim(store, FAR, kinds=(ItemKind.EVENT,))] == ["e"]
    assert [i.id for i in await _claim(store, FAR)] == ["w"]


async def test_queue_claim__leased_items_not_claimed_again(store: Any) -> None:
    await store.apply(Change(items=[_item(0, id="a")]))
    assert len(await _claim(store, at(1))) == 1
    assert await _claim(store, FAR) == []


async def test_queue_claim__marks_run_items_runs_running(store: Any) -> None:
    await create_run(store, id="r1", created_at=at(0))
    await store.apply(Change(items=[_item(0, ItemKind.CALLBACK, id="cb", run_id="r2")]))
    await create_run(store, id="r2", created_at=at(0), item=False)
    await claim_all(store, now=at(5))
    r1 = await store.run_get(run_id="r1")
    r2 = await store.run_get(run_id="r2")
    assert r1 is not None and r1.status is RunStatus.RUNNING and r1.started_at == at(5)
    assert r2 is not None and r2.status is RunStatus.QUEUED  # a callback item does not start
    # a later claim keeps the first started_at
    await store.apply(Change(run_patches=[RunPatch(run_id="r1", status=RunStatus.SLEEPING)],
                             items=[_item(10, ItemKind.RUN, run_id="r1")]))
    await claim_all(store, now=at(20))
    r1 = await store.run_get(run_id="r1")
    assert r1 is not None and r1.status is RunStatus.RUNNING and r1.started_at == at(5)


async def test_queue_claim__does_not_revive_terminal_run(store: Any) -> None:
    await create_run(store, id="r1")
    await store.apply(Change(run_patches=[RunPatch(run_id="r1", status=RunStatus.CANCELLED,
                                                   ended_at=at(1))],
                             items=[_item(0, ItemKind.RUN, run_id="r1")]))
    assert len(await claim_all(store)) == 2
    run = await store.run_get(run_id="r1")
    assert run is not None and run.status is RunStatus.CANCELLED


async def test_queue_claim__concurrent_claimers_get_disjoint_complete_sets(store: Any) -> None:
    total = 200
    await store.apply(Change(items=[_item(i % 17, id=f"i{i:03}") for i in range(total)]))

    async def claimer(n: int) -> list[str]:
        got: list[str] = []
        while True:
            batch = await store.queue_claim(owner=f"e{n}", token=f"t{n}", now=FAR, limit=7,
                                            lease_until=FAR)
            if not batch:
                return got
            got.extend(i.id for i in batch)

    results = await asyncio.gather(*(claimer(n) for n in range(10)))
    flat = [i for r in results for i in r]
    assert len(flat) == len(set(flat)) == total
    assert set(flat) == {f"i{i:03}" for i in range(total)}


async def test_queue_claim__concurrent_single_shot_claims_disjoint(store: Any) -> None:
    await store.apply(Change(items=[_item(0, id=f"i{i:03}") for i in range(200)]))
    results = await asyncio.gather(*(
        store.queue_claim(owner=f"e{n}", token=f"t{n}", now=FAR, limit=20, lease_until=FAR)
        for n in range(10)))
    flat = [i.id for r in results for i in r]
    assert len(flat) == len(set(flat))
    rest = await claim_all(store)
    assert len(flat) + len(rest) == 200
    assert {i.id for i in rest}.isdisjoint(flat)


# -- queue_release -------------------------------------------------------------------


async def test_queue_release__makes_item_due_again(store: Any) -> None:
    await create_run(store, id="r1")
    item, fence = await claim_one(store, now=at(0))
    assert await store.queue_release(fence=fence, due_at=at(50)) is True
    assert await store.queue_next_due() == at(50)
    assert await _claim(store, at(49)) == []
    [again] = await _claim(store, at(50))
    assert again.id == item.id and again.due_at == at(50) and again.expiries == 0
    # the old token no longer completes it
    assert await store.queue_release(fence=fence, due_at=at(60)) is False


async def test_queue_release__wrong_token_or_gone(store: Any) -> None:
    await create_run(store, id="r1")
    item, fence = await claim_one(store)
    assert await store.queue_release(fence=Fence(item.id, "wrong"), due_at=at(5)) is False
    assert await store.queue_next_due() is None  # still leased
    await store.apply(Change(fence=fence))
    assert await store.queue_release(fence=fence, due_at=at(5)) is False
    assert await store.queue_next_due() is None


# -- queue_next_due and queue_depth --------------------------------------------------


async def test_queue_next_due__earliest_unleased(store: Any) -> None:
    assert await store.queue_next_due() is None
    await store.apply(Change(items=[_item(30), _item(10, id="first"), _item(20)]))
    assert await store.queue_next_due() == at(10)
    await _claim(store, at(10))
    assert await store.queue_next_due() == at(20)


async def test_queue_depth__unleased_items_per_queue(store: Any) -> None:
    assert await store.queue_depth() == {}
    await store.apply(Change(items=[_item(0, queue="a"), _item(1, queue="a"),
                                    _item(2, queue="b"), _item(100, queue="b")]))
    assert await store.queue_depth() == {"a": 2, "b": 2}
    await _claim(store, at(0))
    assert await store.queue_depth() == {"a": 1, "b": 2}


async def test_apply__items_due_now_wake_listeners(store: Any) -> None:
    woke = asyncio.Event()
    store.add_listener(woke.set)
    await store.apply(Change(runs=[new_run(created_at=datetime.now(UTC))]))
    await asyncio.wait_for(woke.wait(), timeout=10)


async def test_apply__items_due_later_wake_no_one(store: Any) -> None:
    # Schedulers re-read the next due time at least every WAKE_WITHIN_MS anyway.
    woke = asyncio.Event()
    store.add_listener(woke.set)
    await store.apply(Change(runs=[new_run(created_at=datetime.now(UTC) + timedelta(hours=1))]))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(woke.wait(), timeout=0.3)
