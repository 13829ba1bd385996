"""Bulk replay and cancel of the runs a filter selects, as background tasks of this process.

A job walks :meth:`Store.run_list` page by page (keyset on id, newest first) and
replays or cancels each run; one page of replays is one transaction. The filter
is frozen when the job starts (``created_before`` = the start time), so the runs
a replay creates are never picked up by the same job.

Progress lives in this process's memory, for the page that started the job to
poll: it is lost if the process stops, and another engine process does not see
it. The work itself is durable run by run: what was replayed or cancelled stays
so; a job cut short can be started again (a second cancel skips runs already
ended; a second replay replays the remaining runs *and* the ones already
replayed, since originals keep their status).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from offload.clock import now
from offload.errors import StoreError
from offload.ids import new_id
from offload.models import Run
from offload.store.base import Change, NewRun, RunFilter, Store

log = logging.getLogger("offload.bulk")

Action = Literal["replay", "cancel"]
PAGE_SIZE = 200
MAX_KEPT = 50
"""Finished jobs kept for their progress pages; older ones are forgotten."""


@dataclass
class BulkJob:
    """One bulk operation and how far it got."""

    id: str
    action: Action
    filter: RunFilter
    started_at: datetime
    done: int = 0
    """Runs replayed or cancelled."""
    skipped: int = 0
    """Runs that had already ended (cancel only)."""
    finished_at: datetime | None = None
    error: str | None = None
    cancelled: bool = False

    @property
    def running(self) -> bool:
        """True until the job has walked every page or stopped."""
        return self.finished_at is None


class BulkJobs:
    """Starts bulk jobs and remembers their progress."""

    def __init__(self, store: Store, *, replay: Callable[[Run, datetime], NewRun],
                 on_finished: Callable[[str], None], page_size: int = PAGE_SIZE) -> None:
        self.store = store
        self.replay = replay
        self.on_finished = on_finished
        self.page_size = page_size
        self.jobs: dict[str, BulkJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, action: Action, filter: RunFilter) -> BulkJob:
        """Start replaying or cancelling every run ``filter`` selects now."""
        started = now()
        before = filter.created_before
        frozen = replace(filter, created_before=started if before is None
                         else min(before, started))
        job = BulkJob(id=new_id(), action=action, filter=frozen, started_at=started)
        self.jobs[job.id] = job
        self._forget_old()
        task = asyncio.create_task(self._work(job), name=f"offload-bulk-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job.id, None))
        return job

    def get(self, job_id: str) -> BulkJob | None:
        """A job by id (None if unknown here or forgotten)."""
        return self.jobs.get(job_id)

    def stop(self, job_id: str) -> bool:
        """Stop a running job after its current run; False if it is not running."""
        task = self._tasks.get(job_id)
        job = self.jobs.get(job_id)
        if task is None or job is None:
            return False
        job.cancelled = True
        task.cancel()
        return True

    async def close(self) -> None:
        """Stop every running job."""
        for task in list(self._tasks.values()):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=5)

    def _forget_old(self) -> None:
        finished = sorted((j for j in self.jobs.values() if not j.running),
                          key=lambda j: j.started_at)
        while len(self.jobs) > MAX_KEPT and finished:
            self.jobs.pop(finished.pop(0).id, None)

    async def _work(self, job: BulkJob) -> None:
        cursor: str | None = None
        try:
            while True:
                page = await self.store.run_list(filter=job.filter, cursor=cursor,
                                                 limit=self.page_size)
                if job.action == "replay":
                    await self._replay_page(job, page.data)
                else:
                    await self._cancel_page(job, page.data)
                cursor = page.next_cursor
                if cursor is None:
                    break
        except asyncio.CancelledError:
            job.cancelled = True
        except StoreError as exc:
            job.error = f"the store failed ({type(exc).__name__}); start the job again"
            log.warning("bulk job failed", extra={"job_id": job.id, "action": job.action,
                                                  "done": job.done, "error": str(exc)})
        finally:
            job.finished_at = now()
            log.info("bulk job ended", extra={"job_id": job.id, "action": job.action,
                                              "done": job.done, "skipped": job.skipped})

    async def _replay_page(self, job: BulkJob, runs: list[Run]) -> None:
        if not runs:
            return
        at = now()
        await self.store.apply(Change(runs=[self.replay(run, at) for run in runs]))
        job.done += len(runs)

    async def _cancel_page(self, job: BulkJob, runs: list[Run]) -> None:
        for run in runs:
            if run.status.terminal:
                job.skipped += 1
                continue
            cancelled = await self.store.run_cancel(
                run_id=run.id, at=now(),
                error={"name": "cancelled", "message": "cancelled in bulk", "stack": None})
            if cancelled is None:
                job.skipped += 1
            else:
                job.done += 1
                self.on_finished(run.id)
