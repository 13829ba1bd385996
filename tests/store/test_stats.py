"""Statistics for the dashboard and /metrics: run_stats, run_count_by_status, queue_stats,
function_stats, and the event-name run filter."""

from __future__ import annotations

from typing import Any

from offload.models import ItemKind, RunStatus
from offload.store.base import Change, NewEvent, NewItem, RunFilter, RunPatch

from .conftest import T0, at, claim_one, create_run


async def _end(store: Any, run_id: str, status: RunStatus, started: float,
               ended: float) -> None:
    await store.apply(Change(run_patches=[RunPatch(run_id=run_id, status=RunStatus.RUNNING,
                                                   started_at=at(started))]))
    await store.apply(Change(run_patches=[RunPatch(run_id=run_id, status=status,
                                                   ended_at=at(ended))]))


async def test_run_count_by_status__counts_per_function_and_status(store: Any) -> None:
    assert await store.run_count_by_status() == {}
    a = await create_run(store, function_id="a")
    await create_run(store, function_id="a")
    b = await create_run(store, function_id="b")
    await _end(store, a.id, RunStatus.FAILED, 1, 2)
    await _end(store, b.id, RunStatus.COMPLETED, 1, 2)
    assert await store.run_count_by_status() == {
        ("a", "failed"): 1, ("a", "queued"): 1, ("b", "completed"): 1}


async def test_run_stats__buckets_created_and_ended(store: Any) -> None:
    r1 = await create_run(store, created_at=at(0))
    r2 = await create_run(store, created_at=at(30))
    r3 = await create_run(store, created_at=at(70))
    await create_run(store, created_at=at(-600))  # before the window
    await _end(store, r1.id, RunStatus.COMPLETED, started=2, ended=65)
    await _end(store, r2.id, RunStatus.FAILED, started=34, ended=66)
    await _end(store, r3.id, RunStatus.CANCELLED, started=71, ended=80)
    buckets = await store.run_stats(since=T0, bucket_s=60)
    assert [b.start for b in buckets] == [T0, at(60)]
    first, second = buckets
    assert (first.created, first.completed, first.failed, first.cancelled) == (2, 0, 0, 0)
    assert first.lag_avg_ms == 3000.0 and first.lag_max_ms == 4000
    assert (second.created, second.completed, second.failed, second.cancelled) == (1, 1, 1, 1)
    assert second.lag_max_ms == 1000


async def test_run_stats__empty(store: Any) -> None:
    assert await store.run_stats(since=T0, bucket_s=60) == []


async def test_queue_stats__due_scheduled_leased_and_oldest(store: Any) -> None:
    await create_run(store, function_id="a", created_at=at(0), queue="q1")
    await create_run(store, function_id="a", created_at=at(5), queue="q1")
    await create_run(store, function_id="a", created_at=at(500), queue="q1")  # due later
    await create_run(store, function_id="b", created_at=at(1), queue="q2")
    await store.apply(Change(items=[NewItem(kind=ItemKind.EVENT, due_at=at(2),
                                            payload={"event_id": "e1"})]))
    # Claim the earliest item (run in q1 due at 0) so it is leased.
    await claim_one(store, now=at(0))
    stats = {(s.queue, s.function_id, s.kind): s for s in await store.queue_stats(now=at(10))}
    q1 = stats[("q1", "a", "run")]
    assert (q1.due, q1.scheduled, q1.leased) == (1, 1, 1)
    assert q1.oldest_due_at == at(5)
    q2 = stats[("q2", "b", "run")]
    assert (q2.due, q2.scheduled, q2.leased, q2.oldest_due_at) == (1, 0, 0, at(1))
    event = stats[("default", None, "event")]
    assert (event.due, event.oldest_due_at) == (1, at(2))


async def test_function_stats__percentiles_and_failure_rate(store: Any) -> None:
    for i in range(10):
        run = await create_run(store, function_id="a")
        status = RunStatus.FAILED if i < 2 else RunStatus.COMPLETED
        await _end(store, run.id, status, started=0, ended=i + 1)
    cancelled = await create_run(store, function_id="b")
    await _end(store, cancelled.id, RunStatus.CANCELLED, started=0, ended=3)
    stats = {s.function_id: s for s in await store.function_stats(since=T0)}
    a = stats["a"]
    assert (a.completed, a.failed, a.cancelled) == (8, 2, 0)
    assert (a.p50_ms, a.p95_ms, a.p99_ms) == (5000, 10000, 10000)
    assert a.failure_rate == 0.2
    b = stats["b"]
    assert (b.cancelled, b.p50_ms, b.failure_rate) == (1, None, 0.0)
    assert await store.function_stats(since=at(3600)) == []


async def test_run_list__filters_by_event_name(store: Any) -> None:
    await store.apply(Change(events=[
        NewEvent(id="e1", name="user.signup", data={}, ts=0, received_at=T0, fanout=False),
        NewEvent(id="e2", name="order.paid", data={}, ts=0, received_at=T0, fanout=False)]))
    signup = await create_run(store, event_ids=["e1"])
    await create_run(store, event_ids=["e2"])
    await create_run(store)
    page = await store.run_list(filter=RunFilter(event_name="user.signup"), cursor=None,
                                limit=10)
    assert [r.id for r in page.data] == [signup.id]
