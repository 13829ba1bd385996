"""Bulk replay and cancel by filter, on a real store (both databases).

Pages are BULK queue items; the tests claim and process them the way the scheduler
does, including a page whose engine "died" (its lease expired before it committed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from offload.clock import now
from offload.engine.bulk import BulkJobs
from offload.engine.runs import RunLifecycle
from offload.ids import new_id, new_token
from offload.models import ItemKind, RunStatus
from offload.store.base import Change, NewItem, NewRun, RunFilter, RunPatch


async def _runs(store: Any, n: int, *, queue: str, at: datetime) -> list[str]:
    ids = [new_id() for _ in range(n)]
    await store.apply(Change(runs=[
        NewRun(id=i, function_id="fn", created_at=at, queue=queue,
               items=[NewItem(kind=ItemKind.RUN, due_at=at, queue=queue)]) for i in ids]))
    return ids


class _Recording(RunLifecycle):
    """The real lifecycle, remembering which runs it reported ended."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.finished: list[str] = []

    def ended(self, run_id: str, *args: Any, **kw: Any) -> None:
        self.finished.append(run_id)
        super().ended(run_id, *args, **kw)


async def _drain(store: Any, jobs: BulkJobs) -> int:
    """Process BULK pages until none is due; the number of pages processed."""
    pages = 0
    for _ in range(100):
        at = now()
        items = await store.queue_claim(owner="test", token=new_token(), now=at, limit=10,
                                        lease_until=at + timedelta(seconds=30),
                                        kinds=(ItemKind.BULK,))
        if not items:
            return pages
        for item in items:
            await jobs.process(item)
            pages += 1
    raise AssertionError("bulk job never finished")


async def test_bulk__replays_every_page_of_the_filter_once(store: Any) -> None:
    at = now()
    failed = await _runs(store, 7, queue="q", at=at)
    await _runs(store, 3, queue="other", at=at)
    await store.apply(Change(run_patches=[RunPatch(run_id=i, status=RunStatus.FAILED,
                                                   ended_at=at) for i in failed]))
    jobs = BulkJobs(store, runs=RunLifecycle(store), page_size=3)
    job = await jobs.start("replay", RunFilter(statuses=(RunStatus.FAILED,), queue="q"))
    assert (job.total, job.status) == (7, "running")
    assert await _drain(store, jobs) == 3
    done = await jobs.get(job.id)
    assert done is not None
    assert (done.status, done.done, done.skipped, done.error) == ("completed", 7, 0, None)
    assert done.finished_at is not None
    page = await store.run_list(filter=RunFilter(queue="q"), cursor=None, limit=100)
    replays = [r for r in page.data if r.replay_of]
    assert sorted(r.replay_of for r in replays) == sorted(failed)
    assert {r.status for r in replays} == {RunStatus.QUEUED}


async def test_bulk__cancel_skips_ended_runs(store: Any) -> None:
    at = now()
    ids = await _runs(store, 5, queue="q", at=at)
    await store.apply(Change(run_patches=[RunPatch(run_id=ids[0], status=RunStatus.COMPLETED,
                                                   ended_at=at)]))
    runs = _Recording(store)
    jobs = BulkJobs(store, runs=runs, page_size=2)
    job = await jobs.start("cancel", RunFilter(queue="q"))
    await _drain(store, jobs)
    done = await jobs.get(job.id)
    assert done is not None and (done.done, done.skipped, done.status) == (4, 1, "completed")
    assert sorted(runs.finished) == sorted(ids[1:])
    for run_id in ids[1:]:
        run = await store.run_get(run_id=run_id, with_steps=False)
        assert run is not None and run.status is RunStatus.CANCELLED


async def test_bulk__a_page_whose_engine_died_is_redone_once(store: Any) -> None:
    at = now()
    await _runs(store, 4, queue="q", at=at)
    await store.apply(Change(run_patches=[RunPatch(run_id=r.id, status=RunStatus.FAILED,
                                                   ended_at=at) for r in (await store.run_list(
        filter=RunFilter(queue="q"), cursor=None, limit=10)).data]))
    jobs = BulkJobs(store, runs=RunLifecycle(store), page_size=10)
    job = await jobs.start("replay", RunFilter(statuses=(RunStatus.FAILED,), queue="q"))
    # An engine claims the page and dies before committing: its lease expires.
    claimed = await store.queue_claim(owner="dead", token=new_token(), now=now(), limit=1,
                                      lease_until=now() - timedelta(seconds=1),
                                      kinds=(ItemKind.BULK,))
    assert len(claimed) == 1
    rescued = await store.lease_rescue_expired(now=now(), max_expiries=5)
    assert [r.item_id for r in rescued] == [claimed[0].id]
    await _drain(store, jobs)
    done = await jobs.get(job.id)
    assert done is not None and (done.done, done.status) == (4, "completed")
    replays = [r for r in (await store.run_list(filter=RunFilter(queue="q"), cursor=None,
                                                limit=100)).data if r.replay_of]
    assert len(replays) == 4


async def test_bulk__stop_ends_the_job_before_its_next_page(store: Any) -> None:
    at = now()
    await _runs(store, 6, queue="q", at=at)
    jobs = BulkJobs(store, runs=RunLifecycle(store), page_size=2)
    job = await jobs.start("replay", RunFilter(queue="q"))
    assert await jobs.stop(job.id) is True
    assert await jobs.stop(job.id) is False
    await _drain(store, jobs)
    done = await jobs.get(job.id)
    assert done is not None and (done.status, done.done) == ("cancelled", 0)
