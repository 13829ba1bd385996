"""Reads of runs, events, waits, bulk jobs and cron ticks, and the run writes that are
not a ``Change`` (cancel, prune)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from offload.clock import from_ms, to_ms
from offload.models import BulkJob, Event, Run, RunStatus, Wait
from offload.store import admission
from offload.store.base import Page, RunFilter
from offload.store.rows import (
    BULK_COLS,
    EVENT_COLS,
    RUN_COLS,
    STEP_COLS,
    WAIT_COLS,
    Tx,
    _dt,
    _in,
    _run_where,
    chunks,
    loads,
    row_event,
    row_run,
    row_step,
    row_wait,
)
from offload.store.sql.write import WritePath

T = TypeVar("T")


class Reads(WritePath):
    """``run_*``, ``event_*``, ``wait_list``, ``bulk_job_get``, ``cron_last_tick``."""

    # -- bulk jobs -----------------------------------------------------------------------

    async def bulk_job_get(self, *, job_id: str) -> BulkJob | None:
        """One bulk job."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {BULK_COLS} FROM bulk_jobs WHERE id = ?", (job_id,)))
        if not rows:
            return None
        r = rows[0]
        return BulkJob(id=r[0], action=r[1], filter=loads(r[2]) or {}, status=r[3], total=r[4],
                       done=r[5], skipped=r[6], error=r[7], created_at=_dt(r[8]),
                       updated_at=_dt(r[9]), finished_at=from_ms(r[10]))

    # -- cron ----------------------------------------------------------------------------

    async def cron_last_tick(self, *, function_id: str) -> datetime | None:
        """The latest tick recorded for a cron function."""
        rows = await self._read(lambda tx: tx.execute(
            "SELECT MAX(tick_at) FROM cron_ticks WHERE function_id = ?", (function_id,)))
        return from_ms(rows[0][0]) if rows and rows[0][0] is not None else None

    # -- events --------------------------------------------------------------------------

    async def event_get(self, *, event_id: str) -> Event | None:
        """One event."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {EVENT_COLS} FROM events WHERE id = ?", (event_id,)))
        return row_event(rows[0]) if rows else None

    async def event_get_many(self, *, event_ids: list[str]) -> list[Event]:
        """The events with these ids that exist, in the order of ``event_ids``."""
        if not event_ids:
            return []
        ids = list(dict.fromkeys(event_ids))
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {EVENT_COLS} FROM events WHERE id IN {_in(ids)}", ids))
        found = {e.id: e for e in (row_event(r) for r in rows)}
        return [found[i] for i in event_ids if i in found]

    async def event_list(
        self, *, name: str | None, after: datetime | None, before: datetime | None,
        cursor: str | None, limit: int,
    ) -> Page[Event]:
        """Events newest first."""
        where: list[str] = []
        params: list[Any] = []
        if name is not None:
            where.append("name = ?")
            params.append(name)
        if after is not None:
            where.append("received_at >= ?")
            params.append(to_ms(after))
        if before is not None:
            where.append("received_at < ?")
            params.append(to_ms(before))
        if cursor is not None:
            where.append("id < ?")
            params.append(cursor)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {EVENT_COLS} FROM events {clause} ORDER BY id DESC LIMIT ?",
            (*params, limit + 1)))
        events = [row_event(r) for r in rows[:limit]]
        return Page(events, events[-1].id if len(rows) > limit else None)

    # -- runs ----------------------------------------------------------------------------

    async def run_cancel(self, *, run_id: str, at: datetime, error: dict[str, Any]) -> Run | None:
        """Cancel a run that has not ended: drop its items and waits. None if it has ended."""
        def fn(tx: Tx) -> Run | None:
            row = admission.end_run(self, tx, run_id, RunStatus.CANCELLED, at, error)
            return None if row is None else row_run(row)
        return await self._write(fn)

    async def run_get(self, *, run_id: str, with_steps: bool = True) -> Run | None:
        """One run, with its steps in order."""
        def fn(tx: Tx) -> Run | None:
            rows = tx.execute(f"SELECT {RUN_COLS} FROM runs WHERE id = ?", (run_id,))
            if not rows:
                return None
            run = row_run(rows[0])
            if not with_steps:
                return run
            steps = tx.execute(f"SELECT {STEP_COLS} FROM steps WHERE run_id = ? "
                               "ORDER BY position", (run_id,))
            return replace(run, steps=[row_step(s) for s in steps])
        return await self._read(fn)

    async def run_get_many(self, run_ids: Sequence[str]) -> dict[str, Run]:
        """The runs with these ids that exist (without steps), by id: one read for many."""
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return {}

        def fn(tx: Tx) -> dict[str, Run]:
            out: dict[str, Run] = {}
            for part in chunks(ids, 500):
                for r in tx.execute(f"SELECT {RUN_COLS} FROM runs WHERE id IN {_in(part)}",
                                    part):
                    out[r[0]] = row_run(r)
            return out
        return await self._read(fn)

    async def run_count(self, *, filter: RunFilter) -> int:
        """How many runs ``filter`` selects."""
        clause, params = _run_where(filter, None)
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT COUNT(*) FROM runs {clause}", params))
        return int(rows[0][0])

    async def run_list(self, *, filter: RunFilter, cursor: str | None, limit: int) -> Page[Run]:
        """Runs newest first (without steps)."""
        clause, params = _run_where(filter, cursor)
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {RUN_COLS} FROM runs {clause} ORDER BY id DESC LIMIT ?",
            (*params, limit + 1)))
        runs = [row_run(r) for r in rows[:limit]]
        return Page(runs, runs[-1].id if len(rows) > limit else None)

    async def run_prune(self, *, ended_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` ended runs with their steps, and older events and keys."""
        def fn(tx: Tx) -> int:
            cutoff = to_ms(ended_before)
            rows = tx.execute(
                "SELECT id FROM runs WHERE ended_at IS NOT NULL AND ended_at < ? LIMIT ?",
                (cutoff, limit))
            ids = [r[0] for r in rows]
            if ids:
                for table, column in (("steps", "run_id"), ("run_events", "run_id"),
                                      ("queue_items", "run_id"), ("runs", "id")):
                    tx.execute(f"DELETE FROM {table} WHERE {column} IN {_in(ids)}", ids)
            # Events that unfinished runs still need (a run may sleep past retention) stay.
            tx.execute("DELETE FROM events WHERE id IN (SELECT id FROM events "
                       "WHERE received_at < ? AND id NOT IN (SELECT re.event_id FROM "
                       "run_events re JOIN runs r ON r.id = re.run_id WHERE r.ended_at IS NULL) "
                       "LIMIT ?)", (cutoff, limit))
            events = tx.rowcount
            tx.execute("DELETE FROM idempotency_keys WHERE expires_at < ?", (cutoff,))
            return len(ids) + max(events, 0)
        return await self._write(fn)

    # -- waits ---------------------------------------------------------------------------

    async def wait_list(self, *, event_name: str | None = None,
                        correlation_id: str | None = None) -> list[Wait]:
        """Waits for an event name, or for an invoked run's correlation id."""
        params: tuple[Any, ...] = (event_name,)
        sql = f"SELECT {WAIT_COLS} FROM waits WHERE event_name = ?"
        if correlation_id is not None:
            sql = f"SELECT {WAIT_COLS} FROM waits WHERE correlation_id = ?"
            params = (correlation_id,)
        rows = await self._read(lambda tx: tx.execute(sql, params))
        return [row_wait(r) for r in rows]
