"""Bulk replay and cancel by filter, on a real store (both databases)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from offload.api.v1.runs import replay_of
from offload.engine.bulk import BulkJobs
from offload.ids import new_id
from offload.models import ItemKind, RunStatus
from offload.store.base import Change, NewItem, NewRun, RunFilter, RunPatch


async def _runs(store: Any, n: int, *, queue: str, at: datetime) -> list[str]:
    ids = [new_id() for _ in range(n)]
    await store.apply(Change(runs=[
        NewRun(id=i, function_id="fn", created_at=at, queue=queue,
               items=[NewItem(kind=ItemKind.RUN, due_at=at, queue=queue)]) for i in ids]))
    return ids


async def _finish(job: Any) -> None:
    for _ in range(500):
        if not job.running:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("bulk job did not finish")


async def test_bulk__replays_every_page_of_the_filter_once(store: Any) -> None:
    from offload.clock import now

    at = now()
    failed = await _runs(store, 7, queue="q", at=at)
    await _runs(store, 3, queue="other", at=at)
    await store.apply(Change(run_patches=[RunPatch(run_id=i, status=RunStatus.FAILED,
                                                   ended_at=at) for i in failed]))
    finished: list[str] = []
    jobs = BulkJobs(store, replay=replay_of, on_finished=finished.append, page_size=3)
    job = jobs.start("replay", RunFilter(statuses=(RunStatus.FAILED,), queue="q"))
    await _finish(job)
    assert (job.done, job.error, job.cancelled) == (7, None, False)
    page = await store.run_list(filter=RunFilter(queue="q"), cursor=None, limit=100)
    replays = [r for r in page.data if r.replay_of]
    assert sorted(r.replay_of for r in replays) == sorted(failed)
    assert {r.status for r in replays} == {RunStatus.QUEUED}


async def test_bulk__cancel_skips_ended_runs(store: Any) -> None:
    from offload.clock import now

    at = now()
    ids = await _runs(store, 5, queue="q", at=at)
    await store.apply(Change(run_patches=[RunPatch(run_id=ids[0], status=RunStatus.COMPLETED,
                                                   ended_at=at)]))
    finished: list[str] = []
    jobs = BulkJobs(store, replay=replay_of, on_finished=finished.append, page_size=2)
    job = jobs.start("cancel", RunFilter(queue="q"))
    await _finish(job)
    assert (job.done, job.skipped) == (4, 1)
    assert sorted(finished) == sorted(ids[1:])
    for run_id in ids[1:]:
        run = await store.run_get(run_id=run_id, with_steps=False)
        assert run is not None and run.status is RunStatus.CANCELLED
    assert jobs.get(job.id) is job
