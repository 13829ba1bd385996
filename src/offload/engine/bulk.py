"""Bulk replay and cancel of the runs a filter selects, durable and resumable.

Starting a job writes a ``bulk_jobs`` row and one BULK queue item in one
transaction. Each BULK item handles one page of runs (keyset on id, newest
first) and, in the same transaction fenced by its lease, records the progress
and queues the item of the next page. So a job survives the engine that started
it (a crashed page is rescued like any other item) and any engine may continue
it; progress is read from the store by the API, the dashboard and the CLI.

The filter is frozen when the job starts (``created_before`` = the start time),
so the runs a replay creates are never picked up by the same job.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from offload.clock import now
from offload.engine.replay import replay_of
from offload.engine.runs import RunLifecycle
from offload.ids import new_id
from offload.models import BulkJob, ItemKind, QueueItem, RunStatus
from offload.store.base import BulkProgress, Change, Fence, NewItem, RunFilter, Store

log = logging.getLogger("offload.bulk")

Action = Literal["replay", "cancel"]
PAGE_SIZE = 200
"""Runs per page: one page of replays is one transaction."""


def filter_to_json(f: RunFilter) -> dict[str, Any]:
    """A run filter as stored with its job."""
    return {
        "statuses": [s.value for s in f.statuses], "function_id": f.function_id,
        "queue": f.queue, "event_id": f.event_id, "event_name": f.event_name,
        "created_after": f.created_after.isoformat() if f.created_after else None,
        "created_before": f.created_before.isoformat() if f.created_before else None,
        "search": f.search, "name": f.name, "unreplayed": f.unreplayed,
    }


def filter_from_json(data: dict[str, Any]) -> RunFilter:
    """The run filter stored with a job."""
    def when(key: str) -> datetime | None:
        value = data.get(key)
        return datetime.fromisoformat(value) if value else None

    return RunFilter(
        statuses=tuple(RunStatus(s) for s in data.get("statuses") or ()),
        function_id=data.get("function_id"), queue=data.get("queue"),
        event_id=data.get("event_id"), event_name=data.get("event_name"),
        created_after=when("created_after"), created_before=when("created_before"),
        search=data.get("search"), name=data.get("name"),
        unreplayed=bool(data.get("unreplayed")))


class BulkJobs:
    """Starts bulk jobs and works through their pages as queue items."""

    def __init__(self, store: Store, *, runs: RunLifecycle, page_size: int = PAGE_SIZE) -> None:
        self.store = store
        self.runs = runs
        self.page_size = page_size

    async def start(self, action: Action, filter: RunFilter) -> BulkJob:
        """Start replaying or cancelling every run ``filter`` selects now."""
        at = now()
        before = filter.created_before
        frozen = replace(filter, created_before=at if before is None else min(before, at))
        total = await self.store.run_count(filter=frozen)
        job = BulkJob(id=new_id(), action=action, filter=filter_to_json(frozen),
                      status="running", total=total, done=0, skipped=0, created_at=at,
                      updated_at=at)
        await self.store.apply(Change(bulk_jobs=[job], items=[NewItem(
            kind=ItemKind.BULK, due_at=at, payload={"job_id": job.id, "cursor": None})]))
        log.info("bulk job started", extra={"job_id": job.id, "action": action,
                                            "total": total})
        return job

    async def get(self, job_id: str) -> BulkJob | None:
        """A job by id."""
        return await self.store.bulk_job_get(job_id=job_id)

    async def stop(self, job_id: str) -> bool:
        """Stop a running job before its next page; False if it is not running."""
        job = await self.get(job_id)
        if job is None or not job.running:
            return False
        await self.store.apply(Change(bulk_progress=[BulkProgress(
            job_id=job_id, status="cancelled", at=now())]))
        return True

    async def process(self, item: QueueItem) -> None:
        """Handle one page of a job (the BULK item's handler)."""
        fence = Fence(item.id, item.lease_token or "")
        job = await self.get(str(item.payload.get("job_id", "")))
        if job is None or not job.running:
            await self.store.apply(Change(fence=fence))
            return
        cursor = item.payload.get("cursor")
        page = await self.store.run_list(filter=filter_from_json(job.filter),
                                         cursor=cursor if isinstance(cursor, str) else None,
                                         limit=self.page_size)
        at = now()
        change = Change(fence=fence)
        progress = BulkProgress(job_id=job.id, at=at)
        if job.action == "replay":
            change.runs = [replay_of(run, at) for run in page.data]
            progress.done = len(page.data)
        else:
            for run in page.data:
                cancelled = None if run.status.terminal else await self.runs.cancel(
                    run.id, "bulk", detail=f"job {job.id}", run=run)
                if cancelled is None:
                    progress.skipped += 1
                else:
                    progress.done += 1
        if page.next_cursor is None:
            progress.status = "completed"
        else:
            change.items.append(NewItem(kind=ItemKind.BULK, due_at=at, payload={
                "job_id": job.id, "cursor": page.next_cursor}))
        change.bulk_progress.append(progress)
        await self.store.apply(change)
        if progress.status == "completed":
            log.info("bulk job ended", extra={"job_id": job.id, "action": job.action})
