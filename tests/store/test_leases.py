"""Leases: renewal, and rescue of items whose engine went silent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from offload.engine.runs import RunLifecycle
from offload.errors import LeaseLostError
from offload.models import ItemKind, RunStatus
from offload.store.base import Change, NewItem, NewWait
from offload.store.sql import EXHAUSTED_HOLD_MS

from .conftest import T0, at, claim_one, count, create_run


async def test_lease_renew__extends_owner_leases_only(store: Any) -> None:
    for i in range(3):
        await create_run(store, id=f"r{i}")
    a, _ = await claim_one(store, now=at(0), owner="A", lease_until=at(30))
    b, _ = await claim_one(store, now=at(0), owner="A", lease_until=at(30))
    c, _ = await claim_one(store, now=at(0), owner="B", lease_until=at(30))
    assert await store.lease_renew(owner="A", until=at(90)) == 2
    assert await store.lease_renew(owner="nobody", until=at(90)) == 0
    rescued = await store.lease_rescue_expired(now=at(60), max_expiries=5)
    assert [r.item_id for r in rescued] == [c.id]
    assert {a.id, b.id}.isdisjoint(r.item_id for r in rescued)


async def test_lease_renew__after_completion_renews_nothing(store: Any) -> None:
    await create_run(store, id="r1")
    _, fence = await claim_one(store, owner="A")
    await store.apply(Change(fence=fence))
    assert await store.lease_renew(owner="A", until=at(90)) == 0


async def test_lease_rescue_expired__makes_items_due_again(store: Any) -> None:
    await create_run(store, id="r1")
    await create_run(store, id="r2")
    one, fence = await claim_one(store, now=at(0), lease_until=at(30))
    two, _ = await claim_one(store, now=at(0), lease_until=at(100))
    assert await store.lease_rescue_expired(now=at(30), max_expiries=5) == []  # not yet
    rescued = await store.lease_rescue_expired(now=at(31), max_expiries=5)
    assert [(r.item_id, r.run_id, r.expiries, r.exhausted) for r in rescued] == [
        (one.id, "r1", 1, False)]
    assert await store.queue_next_due() == at(31)
    again, _ = await claim_one(store, now=at(31))
    assert again.id == one.id and again.expiries == 1 and again.lease_token != fence.lease_token
    # the rescued attempt's late write is refused
    try:
        await store.apply(Change(fence=fence))
    except LeaseLostError:
        pass
    else:
        raise AssertionError("late write accepted after rescue")
    assert two.id != one.id


async def test_lease_rescue_expired__counts_expiries_and_exhausts(store: Any) -> None:
    await create_run(store, id="r1")
    await store.apply(Change(
        waits=[NewWait(id="w1", run_id="r1", step_id="s", created_at=T0, event_name="e")]))
    now = 0.0
    for expected in (1, 2):
        await claim_one(store, now=at(now), lease_until=at(now + 10))
        now += 11
        [r] = await store.lease_rescue_expired(now=at(now), max_expiries=3)
        assert (r.expiries, r.exhausted) == (expected, False)
        run = await store.run_get(run_id="r1")
        assert run is not None and not run.status.terminal
    item, _ = await claim_one(store, now=at(now), lease_until=at(now + 10))
    now += 11
    [r] = await store.lease_rescue_expired(now=at(now), max_expiries=3)
    assert (r.item_id, r.run_id, r.expiries, r.exhausted) == (item.id, "r1", 3, True)
    # The store only reports it: the run lifecycle fails the run (engine/runs.py). Until
    # then the item is held back, so an engine dying in between loses nothing.
    run = await store.run_get(run_id="r1")
    assert run is not None and not run.status.terminal
    assert await store.queue_next_due() == at(now) + timedelta(milliseconds=EXHAUSTED_HOLD_MS)
    failed = await RunLifecycle(store).lease_exhausted(r)
    assert failed is not None and failed.status is RunStatus.FAILED
    run = await store.run_get(run_id="r1")
    assert run is not None
    assert run.status is RunStatus.FAILED and run.ended_at is not None
    assert run.error is not None and run.error["name"] == "lease_exhausted"
    assert await count(store, "queue_items", "run_id = ?", ("r1",)) == 0
    assert await store.wait_list(event_name="e") == []
    names = [e.name for e in (await store.event_list(name=None, after=None, before=None,
                                                     cursor=None, limit=10)).data]
    assert sorted(names) == ["inngest/function.failed", "inngest/function.finished"]


async def test_lease_rescue_expired__exhausted_item_without_run(store: Any) -> None:
    await store.apply(Change(items=[NewItem(kind=ItemKind.EVENT, due_at=T0, id="ev")]))
    await claim_one(store, now=at(0), lease_until=at(1))
    [r] = await store.lease_rescue_expired(now=at(2), max_expiries=1)
    assert (r.item_id, r.run_id, r.expiries, r.exhausted) == ("ev", None, 1, True)
    assert await count(store, "queue_items") == 0


async def test_lease_rescue_expired__exhaustion_keeps_terminal_run(store: Any) -> None:
    await create_run(store, id="r1")
    await store.apply(Change(items=[NewItem(kind=ItemKind.CALLBACK, due_at=T0, run_id="r1")]))
    from offload.store.base import RunPatch

    await store.apply(Change(run_patches=[RunPatch(run_id="r1", status=RunStatus.COMPLETED,
                                                   output="ok", ended_at=at(0))]))
    await claim_one(store, now=at(0), lease_until=at(1), kinds=(ItemKind.CALLBACK,))
    [r] = await store.lease_rescue_expired(now=at(2), max_expiries=1)
    assert r.exhausted
    run = await store.run_get(run_id="r1")
    assert run is not None and run.status is RunStatus.COMPLETED and run.output == "ok"


async def test_lease_rescue_expired__nothing_leased(store: Any) -> None:
    await create_run(store, id="r1")
    assert await store.lease_rescue_expired(now=at(10_000), max_expiries=1) == []
    assert await store.queue_next_due() == T0


async def test_apply__kept_fence_blocks_concurrent_lease_change(postgres_url: str) -> None:
    """A fence check holds the item's row until commit, so a rescuer cannot slip between.

    Another transaction takes the item's row lock first and moves the lease; the fenced
    apply must wait for it and then refuse, not check a stale row and commit.
    """
    import asyncio

    import psycopg

    from offload.store import open_store
    from offload.store.base import RunPatch

    store = open_store(postgres_url)
    await store.open()
    try:
        await create_run(store, id="r1")
        item, fence = await claim_one(store)
        with psycopg.connect(postgres_url) as other:
            other.execute("UPDATE queue_items SET lease_token = 'rescuer' WHERE id = %s",
                          (item.id,))
            task = asyncio.ensure_future(store.apply(Change(
                fence=fence, keep_fenced_item=True,
                run_patches=[RunPatch(run_id="r1", status=RunStatus.COMPLETED)])))
            done, _ = await asyncio.wait({task}, timeout=0.5)
            assert not done, "the fenced apply did not wait for the row lock"
            other.commit()
        try:
            await asyncio.wait_for(task, timeout=10)
        except LeaseLostError:
            pass
        else:
            raise AssertionError("a fence checked against a stale row was accepted")
        run = await store.run_get(run_id="r1")
        assert run is not None and run.status is RunStatus.RUNNING
    finally:
        await store.close()


async def test_lease_release__hands_back_only_the_owners_leases(store: Any) -> None:
    for i in range(3):
        await create_run(store, id=f"r{i}")
    a, fence_a = await claim_one(store, now=at(0), owner="A", lease_until=at(300))
    await claim_one(store, now=at(0), owner="A", lease_until=at(300))
    c, _ = await claim_one(store, now=at(0), owner="B", lease_until=at(300))
    assert await store.lease_release(owner="A") == 2
    # released items are due again at once, for anyone; B keeps its lease
    again = await store.queue_claim(owner="C", token="tok-c", now=at(1), limit=10,
                                    lease_until=at(60))
    assert a.id in {i.id for i in again} and c.id not in {i.id for i in again}
    # the old owner's token no longer fences anything
    try:
        await store.apply(Change(fence=fence_a))
    except LeaseLostError:
        pass
    else:
        raise AssertionError("a released lease still fenced a write")
