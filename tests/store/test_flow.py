"""Flow control in the store: concurrency slots and blocked items, GCRA, debounce, batch,
singleton. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from offload.ids import new_id, new_token
from offload.models import ItemKind, RunStatus
from offload.store.base import (
    Batch,
    Change,
    ConcurrencyLimit,
    Debounce,
    Fence,
    Gcra,
    NewItem,
    RunFlow,
    Singleton,
)

from .conftest import FAR, T0, at, count, new_run


def _run(id: str, *, created: float = 0, due: float | None = None, flow: RunFlow | None = None,
         **kw: Any) -> Any:
    run = new_run(id=id, created_at=at(created), **kw)
    if due is not None:
        run.items[0].due_at = at(due)
    run.flow = flow
    return run


def _limit(*pairs: tuple[str, int]) -> RunFlow:
    return RunFlow(concurrency=[ConcurrencyLimit(k, n) for k, n in pairs])


async def _add(store: Any, *runs: Any) -> Any:
    return await store.apply(Change(runs=list(runs)))


async def _claim(store: Any, now: Any = FAR, limit: int = 100, owner: str = "e1") -> list[Any]:
    return await store.queue_claim(owner=owner, token=new_token(), now=now, limit=limit,
                                   lease_until=now + timedelta(seconds=30))


def _fence(item: Any) -> Fence:
    return Fence(item.id, item.lease_token)


async def _blocked(store: Any) -> int:
    return await count(store, "queue_items", "blocked = 1")


# -- concurrency -----------------------------------------------------------------------------


async def test_concurrency__claims_at_most_limit_per_key(store: Any) -> None:
    await _add(store, *[_run(f"a{i}", due=i, flow=_limit(("A", 2))) for i in range(5)],
               _run("free", due=10))
    got = await _claim(store)
    assert sorted(i.run_id for i in got) == ["a0", "a1", "free"]
    assert await _blocked(store) == 3
    assert await _claim(store) == []
    runs = {r: (await store.run_get(run_id=r, with_steps=False)).status
            for r in ("a0", "a2")}
    assert runs == {"a0": RunStatus.RUNNING, "a2": RunStatus.QUEUED}  # given back: not started


async def test_concurrency__finishing_frees_one_slot_earliest_first(store: Any) -> None:
    await _add(store, *[_run(f"a{i}", due=i, flow=_limit(("A", 1))) for i in range(4)])
    [first] = await _claim(store)
    assert first.run_id == "a0"
    await store.apply(Change(fence=_fence(first)))
    assert await _blocked(store) == 2
    [second] = await _claim(store)
    assert second.run_id == "a1"
    assert await _claim(store) == []


async def test_concurrency__release_cancel_and_rescue_free_slots(store: Any) -> None:
    await _add(store, *[_run(f"a{i}", due=i, flow=_limit(("A", 1))) for i in range(4)])
    [one] = await _claim(store, now=at(10))
    assert await store.queue_release(fence=_fence(one), due_at=at(100))
    [two] = await _claim(store, now=at(10))
    assert two.run_id == "a1"
    assert await store.run_cancel(run_id="a1", at=at(11), error={"name": "x"}) is not None
    [three] = await _claim(store, now=at(12))
    assert three.run_id == "a2"
    # the engine holding a2 dies: the lease expires and the slot comes back
    assert await _claim(store, now=at(13)) == []
    await store.lease_rescue_expired(now=at(50), max_expiries=5)
    [four] = await _claim(store, now=at(50))
    assert four.run_id == "a3"  # due at 3, earlier than the rescued a2 (due again at 50)
    await store.apply(Change(fence=_fence(four)))
    assert [i.run_id for i in await _claim(store, now=at(51))] == ["a2"]


async def test_concurrency__saturated_key_never_delays_other_keys(store: Any) -> None:
    await _add(store, *[_run(f"a{i}", due=0, flow=_limit(("A", 2))) for i in range(300)])
    first = await _claim(store, limit=10)
    assert len(first) == 2
    await _add(store, *[_run(f"b{i}", due=1, flow=_limit(("B", 5))) for i in range(5)],
               _run("plain", due=2))
    got = await _claim(store, limit=10)
    assert sorted(i.run_id for i in got) == ["b0", "b1", "b2", "b3", "b4", "plain"]
    assert await _blocked(store) == 298
    assert await store.queue_next_due() is None  # blocked items are not due


async def test_concurrency__two_keys_both_enforced(store: Any) -> None:
    await _add(store,
               _run("x1", due=0, flow=_limit(("A", 5), ("shared", 2))),
               _run("x2", due=1, flow=_limit(("B", 5), ("shared", 2))),
               _run("x3", due=2, flow=_limit(("A", 5), ("shared", 2))),
               _run("y1", due=3, flow=_limit(("shared", 9), ("A", 1))))
    got = await _claim(store)
    assert sorted(i.run_id for i in got) == ["x1", "x2"]
    for item in got:
        await store.apply(Change(fence=_fence(item)))
    got = await _claim(store)
    assert sorted(i.run_id for i in got) == ["x3"]  # y1: A has room (1) but not after x3
    await store.apply(Change(fence=_fence(got[0])))
    assert [i.run_id for i in await _claim(store)] == ["y1"]


async def test_concurrency__priority_order_when_saturated(store: Any) -> None:
    await _add(store, _run("running", due=0, flow=_limit(("A", 1))))
    [running] = await _claim(store, now=at(1))
    runs = [_run(f"p{p}", created=2, flow=_limit(("A", 1))) for p in (0, 300, -100, 600)]
    for r, p in zip(runs, (0, 300, -100, 600), strict=True):
        r.items[0].due_at = at(2 - p)
    await _add(store, *runs)
    assert await _claim(store, now=at(1000)) == []
    order = []
    item = running
    for _ in range(4):
        await store.apply(Change(fence=_fence(item)))
        [item] = await _claim(store, now=at(1000))
        order.append(item.run_id)
    assert order == ["p600", "p300", "p0", "p-100"]


async def test_concurrency__retry_items_inherit_the_runs_keys(store: Any) -> None:
    await _add(store, _run("r1", due=0, flow=_limit(("A", 1))),
               _run("r2", due=1, flow=_limit(("A", 1))))
    [item] = await _claim(store, now=at(5))
    # the attempt fails: a retry item for the same run, due now, without explicit keys
    await store.apply(Change(fence=_fence(item), items=[
        NewItem(kind=ItemKind.RUN, run_id="r1", due_at=at(5))]))
    got = await _claim(store, now=at(6))
    assert len(got) == 1  # r2 unblocked by the finished attempt; the retry waits its turn
    rows = await store._read(lambda tx: tx.execute(
        "SELECT concurrency_key, concurrency_limit FROM queue_items WHERE run_id = 'r1'"))
    assert rows == [("A", 1)]


async def test_concurrency__sleeping_runs_hold_no_slot(store: Any) -> None:
    await _add(store, _run("r1", due=0, flow=_limit(("A", 1))),
               _run("r2", due=1, flow=_limit(("A", 1))))
    [item] = await _claim(store, now=at(5))
    # r1 sleeps for an hour: its item is replaced by one due later
    await store.apply(Change(fence=_fence(item), items=[
        NewItem(kind=ItemKind.RUN, run_id="r1", due_at=at(3600))]))
    assert [i.run_id for i in await _claim(store, now=at(6))] == ["r2"]


async def test_concurrency__concurrent_claimers_never_over_admit(store: Any) -> None:
    from offload.store import open_store

    others = [open_store(store.url) for _ in range(3)]
    for other in others:
        await other.open()
    try:
        await _add(store, *[_run(f"a{i}", due=0, flow=_limit(("A", 3))) for i in range(60)])
        claims = await asyncio.gather(*[_claim(s, limit=5, owner=f"e{n}")
                                        for n, s in enumerate([store, *others] * 3)])
        assert sum(len(c) for c in claims) == 3
    finally:
        for other in others:
            await other.close()


# -- throttle and rate limit -----------------------------------------------------------------


async def test_throttle__spaces_starts_with_burst(store: Any) -> None:
    rule = Gcra("t", limit=2, period_ms=1000, burst=2)  # one per 500 ms, two back to back
    await _add(store, *[_run(f"t{i}", created=0, flow=RunFlow(throttle=rule)) for i in range(5)])
    rows = await store._read(lambda tx: tx.execute(
        "SELECT run_id, due_at FROM queue_items ORDER BY run_id"))
    t0 = int(T0.timestamp() * 1000)
    assert [d - t0 for _, d in rows] == [0, 0, 500, 1000, 1500]
    # after a quiet spell the burst is available again
    await _add(store, _run("late", created=10, flow=RunFlow(throttle=rule)))
    rows = await store._read(lambda tx: tx.execute(
        "SELECT due_at FROM queue_items WHERE run_id = 'late'"))
    assert rows[0][0] - t0 == 10_000


async def test_rate_limit__drops_excess_as_cancelled_runs(store: Any) -> None:
    rule = Gcra("r", limit=2, period_ms=10_000)
    result = await _add(store, *[_run(f"r{i}", created=i, flow=RunFlow(rate_limit=rule))
                                 for i in range(4)])
    assert result.outcomes == ["created", "created", "rate_limited", "rate_limited"]
    dropped = result.runs[2][0]
    assert dropped.status is RunStatus.CANCELLED and dropped.error["name"] == "rate_limited"
    stored = await store.run_get(run_id="r2", with_steps=False)
    assert stored.status is RunStatus.CANCELLED and stored.ended_at == at(2)
    assert await count(store, "queue_items") == 2
    later = await _add(store, _run("r9", created=6, flow=RunFlow(rate_limit=rule)))
    assert later.outcomes == ["created"]  # a token came back after period / limit


# -- debounce and batch ------------------------------------------------------------------


async def test_debounce__one_run_with_the_last_input(store: Any) -> None:
    rule = Debounce("d", period_ms=5000, timeout_ms=12_000)
    first = await _add(store, _run("d1", created=0, input={"n": 1}, event_ids=["e1"],
                                   flow=RunFlow(debounce=rule)))
    assert first.outcomes == ["created"]
    for i, t in ((2, 3), (3, 6), (4, 9)):
        r = await _add(store, _run(f"d{i}", created=t, input={"n": i}, event_ids=[f"e{i}"],
                                   flow=RunFlow(debounce=rule)))
        assert r.outcomes == ["debounced"] and r.runs[0][0].id == "d1"
    run = await store.run_get(run_id="d1", with_steps=False)
    assert run.input == {"n": 4} and run.event_ids == ["e4"]
    assert await count(store, "runs") == 1
    # capped by the timeout: 12 s after the first, not 9 + 5
    assert await store.queue_next_due() == at(12)
    [item] = await _claim(store, now=at(12))
    assert item.run_id == "d1"
    again = await _add(store, _run("d5", created=13, flow=RunFlow(debounce=rule)))
    assert again.outcomes == ["created"]  # the old debounce already started


async def test_batch__events_collected_into_one_run(store: Any) -> None:
    rule = Batch("b", max_size=3, timeout_ms=60_000)
    outcomes = []
    for i in range(4):
        r = await _add(store, _run(f"b{i}", created=i, event_ids=[f"e{i}"],
                                   flow=RunFlow(batch=rule)))
        outcomes.extend(r.outcomes)
    assert outcomes == ["created", "batched", "batched", "created"]
    first = await store.run_get(run_id="b0", with_steps=False)
    assert first.event_ids == ["e0", "e1", "e2"]
    # full batch is due at once; the next batch waits for its timeout
    got = await _claim(store, now=at(3))
    assert [i.run_id for i in got] == ["b0"]
    assert await store.queue_next_due() == at(63)


# -- singleton ----------------------------------------------------------------------------


async def test_singleton__skip_while_running(store: Any) -> None:
    rule = Singleton("s", "skip")
    await _add(store, _run("s1", flow=RunFlow(singleton=rule)))
    skipped = await _add(store, _run("s2", created=1, flow=RunFlow(singleton=rule)))
    assert skipped.outcomes == ["skipped"]
    assert skipped.runs[0][0].status is RunStatus.CANCELLED
    [item] = await _claim(store, now=at(2))
    await store.apply(Change(fence=_fence(item), run_patches=[]))
    await store.run_cancel(run_id="s1", at=at(3), error={"name": "done"})
    after = await _add(store, _run("s3", created=4, flow=RunFlow(singleton=rule)))
    assert after.outcomes == ["created"]


async def test_singleton__cancel_replaces_running_run(store: Any) -> None:
    rule = Singleton("s", "cancel")
    await _add(store, _run("s1", flow=RunFlow(singleton=rule, concurrency=[
        ConcurrencyLimit("A", 1)])))
    await _add(store, _run("other", due=1, flow=_limit(("A", 1))))
    [item] = await _claim(store, now=at(2))
    assert item.run_id == "s1"
    result = await _add(store, _run("s2", created=3, due=1000,
                                    flow=RunFlow(singleton=rule)))
    assert result.outcomes == ["created"] and result.cancelled == ["s1"]
    old = await store.run_get(run_id="s1", with_steps=False)
    assert old.status is RunStatus.CANCELLED and old.error["name"] == "singleton_cancelled"
    # s1's slot of key A was freed by the cancel
    assert [i.run_id for i in await _claim(store, now=at(4))] == ["other"]


async def test_flow__idempotency_duplicate_reports_outcome(store: Any) -> None:
    from offload.store.base import Idempotency

    def run() -> Any:
        return _run(new_id(), idempotency=Idempotency("task", "k", at(100)))

    result = await _add(store, run(), run())
    assert result.outcomes == ["created", "duplicate"]


async def test_concurrency__batch_inserts_keep_keys(store: Any) -> None:
    await _add(store, *[_run(f"a{i}", due=i, flow=_limit(("A", 2))) for i in range(5)],
               *[_run(f"p{i}", due=i) for i in range(3)])
    got = await _claim(store)
    assert sorted(i.run_id for i in got) == ["a0", "a1", "p0", "p1", "p2"]
    rows = await store._read(lambda tx: tx.execute(
        "SELECT concurrency FROM runs WHERE id = 'a3'"))
    assert rows == [('[["A",2]]',)]
