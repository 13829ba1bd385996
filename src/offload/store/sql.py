"""The Store, written once against a small DB-API surface and run on both databases.

:class:`SqlStore` holds every query. A backend (``sqlite.py``, ``postgres.py``)
supplies only how a function gets a transaction (``_write``) or a read
connection (``_read``), and the few statements whose SQL differs (the claim).
Functions passed to the backend are synchronous and run in the backend's
threads; they receive a :class:`Tx`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from offload import faults
from offload.clock import from_ms, now_ms, to_ms
from offload.errors import LeaseLostError, StaleRunError
from offload.ids import new_id
from offload.models import (
    ApiKey,
    App,
    BulkJob,
    Event,
    Function,
    ItemKind,
    QueueItem,
    Run,
    RunStatus,
    Wait,
)
from offload.store import admission, ops
from offload.store.base import (
    UNSET,
    WAKE_WITHIN_MS,
    Change,
    ChangeResult,
    Fence,
    FunctionStat,
    NewEvent,
    NewItem,
    NewRun,
    Page,
    QueueStat,
    Rescued,
    RunBucket,
    RunFilter,
    RunPatch,
    StepWrite,
)
from offload.store.dashboard_queries import DashboardQueries, record_restarts
from offload.store.engines import EngineQueries
from offload.store.next_attempts import NextAttemptQueries
from offload.store.rows import (
    APP_COLS,
    BULK_COLS,
    EVENT_COLS,
    FUNCTION_COLS,
    KEY_COLS,
    RUN_COLS,
    STEP_COLS,
    TERMINAL_SQL,
    WAIT_COLS,
    Tx,
    _dt,
    _in,
    _ms,
    _run_where,
    dumps,
    loads,
    row_app,
    row_event,
    row_function,
    row_item,
    row_key,
    row_run,
    row_step,
    row_wait,
)
from offload.store.sessions import SessionQueries
from offload.store.webhooks import WebhookQueries

T = TypeVar("T")

EXHAUSTED_HOLD_MS = 60_000
"""An exhausted item of a live run waits this long for its run to be failed; if the
engine died before failing it, the item comes back and is retried."""


_RUN_INSERT = (
    f"INSERT INTO runs ({RUN_COLS}, concurrency) VALUES "
    "(?, ?, ?, ?, 0, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)"
)
_ITEM_INSERT = (
    "INSERT INTO queue_items (id, kind, run_id, due_at, priority, queue, "
    "concurrency_key, payload, created_at, concurrency_limit, concurrency_key2, "
    "concurrency_limit2) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _run_params(run: NewRun) -> tuple[Any, ...]:
    """The parameters of ``_RUN_INSERT`` for ``run``."""
    created = to_ms(run.created_at)
    limits = run.flow.concurrency if run.flow is not None else []
    return (run.id, run.app_id, run.function_id, run.status.value,
            dumps(run.event_ids) if run.event_ids else "[]", dumps(run.input), run.queue,
            run.correlation_id, run.replay_of,
            run.idempotency.key if run.idempotency else None,
            dumps(run.state) if run.state else "{}", created,
            created, run.name, dumps([[c.key, c.limit] for c in limits]) if limits else None)


def _item_params(item: NewItem, item_id: str) -> tuple[Any, ...]:
    """The parameters of ``_ITEM_INSERT`` for ``item``, stored as ``item_id``."""
    due = to_ms(item.due_at)
    return (item_id, item.kind.value, item.run_id, due, item.priority,
            item.queue, item.concurrency_key, dumps(item.payload) if item.payload else "{}",
            due, item.concurrency_limit, item.concurrency_key2, item.concurrency_limit2)


def _stored_run(run: NewRun) -> Run:
    """The Run that inserting ``run`` stores."""
    return Run(
        id=run.id, function_id=run.function_id, status=run.status, attempt=0,
        created_at=run.created_at, updated_at=run.created_at, app_id=run.app_id,
        event_ids=list(run.event_ids), input=run.input, queue=run.queue,
        correlation_id=run.correlation_id, replay_of=run.replay_of,
        idempotency_key=run.idempotency.key if run.idempotency else None,
        state=dict(run.state), name=run.name,
    )


class SqlStore(EngineQueries, DashboardQueries, ops.OpsQueries, WebhookQueries,
               SessionQueries, NextAttemptQueries, abc.ABC):
    """Every query of the Store; subclasses supply transactions and dialect SQL."""

    url: str

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    # -- backend hooks -------------------------------------------------------------------

    @abc.abstractmethod
    async def _write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a write transaction; commit, or roll back on error."""

    @abc.abstractmethod
    async def _read(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` on a read connection."""

    @abc.abstractmethod
    def _claim_sql(self, kinds: int) -> str:
        """The statement that leases due items: params owner, token, until, now, [kinds], limit.

        It returns ITEM_COLS then concurrency_limit, concurrency_key2, concurrency_limit2.
        """

    skip_locked: str = ""
    """Appended to sub-selects of rows other transactions may hold (PostgreSQL: SKIP LOCKED)."""
    share_locked: str = ""
    """Appended to reads whose rows must not change until commit (PostgreSQL: FOR SHARE)."""

    def _lock_keys(self, tx: Tx, keys: list[str]) -> None:
        """Serialise transactions on concurrency ``keys`` (sorted) until commit.

        SQLite has one writer, so this is a no-op there.
        """
        return None

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` from the event loop when new work may be due."""
        self._listeners.append(callback)

    def _notify_listeners(self) -> None:
        for callback in self._listeners:
            callback()

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless the database answers."""
        await self._read(lambda tx: tx.execute("SELECT 1"))

    # -- api keys ------------------------------------------------------------------------

    async def api_key_insert(self, *, key: ApiKey, key_hash: str) -> None:
        """Store a new API key by its hash."""
        def fn(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO api_keys (id, name, scope, key_hash, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (key.id, key.name, key.scope, key_hash, to_ms(key.created_at)),
            )
        await self._write(fn)

    async def api_key_find(self, *, key_hash: str) -> ApiKey | None:
        """The unrevoked key with this hash, or None."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {KEY_COLS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
            (key_hash,)))
        return row_key(rows[0]) if rows else None

    async def api_key_list(self) -> list[ApiKey]:
        """Every key, newest first."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {KEY_COLS} FROM api_keys ORDER BY created_at DESC"))
        return [row_key(r) for r in rows]

    async def api_key_revoke(self, *, key_id: str, at: datetime) -> bool:
        """Revoke a key; False if there is no such key."""
        def fn(tx: Tx) -> bool:
            tx.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                       (to_ms(at), key_id))
            return tx.rowcount > 0
        return await self._write(fn)

    # -- apps and functions ------------------------------------------------------------

    async def app_delete(self, *, app_id: str) -> bool:
        """Remove an app and its functions."""
        def fn(tx: Tx) -> bool:
            tx.execute("DELETE FROM functions WHERE app_id = ?", (app_id,))
            tx.execute("DELETE FROM apps WHERE id = ?", (app_id,))
            return tx.rowcount > 0
        return await self._write(fn)

    async def app_get(self, *, app_id: str) -> App | None:
        """One app."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {APP_COLS} FROM apps WHERE id = ?", (app_id,)))
        return row_app(rows[0]) if rows else None

    async def app_list(self) -> list[App]:
        """Every app, by id."""
        rows = await self._read(lambda tx: tx.execute(f"SELECT {APP_COLS} FROM apps ORDER BY id"))
        return [row_app(r) for r in rows]

    async def app_set_sync_error(self, *, app_id: str, error: str | None, at: datetime) -> None:
        """Record the outcome of the last sync attempt."""
        await self._write(lambda tx: tx.execute(
            "UPDATE apps SET sync_error = ?, updated_at = ? WHERE id = ?",
            (error, to_ms(at), app_id)))

    async def app_sync(self, *, app: App, functions: list[Function]) -> bool:
        """Upsert the app and replace its function set atomically; False if unchanged."""
        def fn(tx: Tx) -> bool:
            rows = tx.execute("SELECT checksum, url FROM apps WHERE id = ?", (app.id,))
            unchanged = bool(rows) and rows[0][0] == app.checksum and rows[0][1] == app.url
            synced = _ms(app.synced_at)
            if rows:
                tx.execute(
                    "UPDATE apps SET url = ?, sdk = ?, framework = ?, app_version = ?, "
                    "checksum = ?, sync_error = NULL, synced_at = ?, updated_at = ? WHERE id = ?",
                    (app.url, app.sdk, app.framework, app.app_version, app.checksum, synced,
                     to_ms(app.updated_at), app.id))
            else:
                tx.execute(
                    f"INSERT INTO apps ({APP_COLS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                    (app.id, app.url, app.sdk, app.framework, app.app_version, app.checksum,
                     synced, to_ms(app.created_at), to_ms(app.updated_at)))
            if unchanged:
                return False
            keep = [f.id for f in functions]
            if keep:
                tx.execute(f"DELETE FROM functions WHERE app_id = ? AND id NOT IN {_in(keep)}",
                           (app.id, *keep))
            else:
                tx.execute("DELETE FROM functions WHERE app_id = ?", (app.id,))
            for f in functions:
                tx.execute(
                    f"INSERT INTO functions ({FUNCTION_COLS}) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET app_id = excluded.app_id, "
                    "name = excluded.name, config = excluded.config, "
                    "updated_at = excluded.updated_at",
                    (f.id, f.app_id, f.name, dumps(f.config), to_ms(f.created_at),
                     to_ms(f.updated_at)))
            return True
        return await self._write(fn)

    async def function_get(self, *, function_id: str) -> Function | None:
        """One function."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {FUNCTION_COLS} FROM functions WHERE id = ?", (function_id,)))
        return row_function(rows[0]) if rows else None

    async def function_list(self, *, app_id: str | None = None) -> list[Function]:
        """Functions by id, optionally of one app."""
        params: tuple[Any, ...] = ()
        sql = f"SELECT {FUNCTION_COLS} FROM functions ORDER BY id"
        if app_id is not None:
            sql = f"SELECT {FUNCTION_COLS} FROM functions WHERE app_id = ? ORDER BY id"
            params = (app_id,)
        rows = await self._read(lambda tx: tx.execute(sql, params))
        return [row_function(r) for r in rows]

    # -- the one write path --------------------------------------------------------------

    async def apply(self, change: Change) -> ChangeResult:
        """Commit a change atomically; raise LeaseLostError if its fence no longer holds."""
        return await self._write(lambda tx: self._apply(tx, change))

    def _apply(self, tx: Tx, change: Change) -> ChangeResult:
        result = ChangeResult()
        if change.fence is not None:
            self._check_fence(tx, change.fence, delete=not change.keep_fenced_item)
        # The tick goes first: a tick another engine already fired writes nothing at all.
        if change.cron_tick is not None:
            function_id, tick = change.cron_tick
            run_id = change.runs[0].id if change.runs else ""
            tx.execute("INSERT INTO cron_ticks (function_id, tick_at, run_id) VALUES (?, ?, ?) "
                       "ON CONFLICT (function_id, tick_at) DO NOTHING",
                       (function_id, to_ms(tick), run_id))
            if tx.rowcount == 0:
                result.cron_fired = False
                return result
        for event in change.events:
            self._insert_event(tx, event, result)
        self._insert_runs(tx, change.runs, result)
        for patch in change.run_patches:
            self._patch_run(tx, patch)
        for step in change.steps:
            self._write_step(tx, step)
        if change.steps:
            faults.crash_point("write.uncommitted")  # tests only: die before the commit
        for item in change.items:
            self._insert_item(tx, item, result)
        if change.delete_waits_of_runs:
            ids = change.delete_waits_of_runs
            tx.execute(f"DELETE FROM waits WHERE run_id IN {_in(ids)}", ids)
        for wait in change.waits:
            tx.execute(
                f"INSERT INTO waits ({WAIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (wait.id, wait.run_id, wait.step_id, wait.event_name, wait.expression,
                 wait.correlation_id, None if wait.trigger is None else dumps(wait.trigger),
                 _ms(wait.expires_at), to_ms(wait.created_at)))
        for job in change.bulk_jobs:
            tx.execute(
                f"INSERT INTO bulk_jobs ({BULK_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.action, dumps(job.filter), job.status, job.total, job.done,
                 job.skipped, job.error, to_ms(job.created_at), to_ms(job.updated_at),
                 _ms(job.finished_at)))
        for progress in change.bulk_progress:
            at = to_ms(progress.at) if progress.at else now_ms()
            tx.execute(
                "UPDATE bulk_jobs SET done = done + ?, skipped = skipped + ?, "
                "status = COALESCE(?, status), error = COALESCE(?, error), updated_at = ?, "
                "finished_at = COALESCE(?, finished_at) WHERE id = ? AND status = 'running'",
                (progress.done, progress.skipped, progress.status, progress.error, at,
                 at if progress.status else None, progress.job_id))
        for resume in change.resumes:
            tx.execute("DELETE FROM waits WHERE id = ?", (resume.wait_id,))
            if tx.rowcount == 0:
                continue
            self._write_step(tx, resume.step)
            self._insert_item(tx, resume.item, result)
            result.resumed.append(resume.wait_id)
        for end in change.ends:
            row = admission.end_run(self, tx, end.run_id, end.status, end.at, end.error)
            if row is None:
                continue  # it had ended already: its events were written by its ender
            result.ended.append(row_run(row))
            for event in end.events:
                self._insert_event(tx, event, result)
        return result

    def _insert_event(self, tx: Tx, event: NewEvent, result: ChangeResult) -> None:
        # ON CONFLICT rather than select-then-insert: two engines accepting the same
        # external id at once must dedupe, not fail one request on the unique index.
        tx.execute(
            f"INSERT INTO events ({EVENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (external_id) DO NOTHING",
            (event.id, event.name, dumps(event.data), event.ts, to_ms(event.received_at),
             None if event.user is None else dumps(event.user), event.external_id,
             event.correlation_id, event.traceparent,
             dumps(event.extra) if event.extra else None))
        if tx.rowcount == 0:
            rows = tx.execute(f"SELECT {EVENT_COLS} FROM events WHERE external_id = ?",
                              (event.external_id,))
            result.events.append((row_event(rows[0]), False))
            return
        result.events.append((Event(id=event.id, name=event.name, data=event.data,
                                    ts=event.ts, received_at=event.received_at,
                                    user=event.user, external_id=event.external_id,
                                    correlation_id=event.correlation_id,
                                    traceparent=event.traceparent, extra=event.extra), True))
        if event.fanout:
            self._insert_item(tx, NewItem(kind=ItemKind.EVENT, due_at=event.received_at,
                                          payload={"event_id": event.id}), result)

    def _check_fence(self, tx: Tx, fence: Fence, *, delete: bool) -> None:
        if delete:
            gone = tx.execute("DELETE FROM queue_items WHERE id = ? AND lease_token = ? "
                              "RETURNING concurrency_key, concurrency_key2",
                              (fence.item_id, fence.lease_token))
            held = bool(gone)
            if gone and (gone[0][0] is not None or gone[0][1] is not None):
                admission.unblock(self, tx, gone[0])
        else:
            # A no-op UPDATE, not a SELECT: it locks the row until commit (PostgreSQL), so a
            # concurrent rescue cannot move the lease between this check and the commit.
            tx.execute("UPDATE queue_items SET lease_token = lease_token "
                       "WHERE id = ? AND lease_token = ?", (fence.item_id, fence.lease_token))
            held = tx.rowcount > 0
        if not held:
            raise LeaseLostError(f"lease on queue item {fence.item_id} is no longer held")

    def _insert_item(self, tx: Tx, item: NewItem, result: ChangeResult, *,
                     inherit: bool = True) -> None:
        if inherit:
            admission.inherit_concurrency(tx, item)
        tx.execute(_ITEM_INSERT, _item_params(item, item.id or new_id()))
        if to_ms(item.due_at) <= now_ms() + WAKE_WITHIN_MS:
            # Later work needs no wake-up: schedulers re-read the next due time at
            # least every WAKE_WITHIN_MS (scheduler.IDLE_POLL_S).
            tx.notify = True
        result.enqueued += 1

    def _insert_runs(self, tx: Tx, runs: list[NewRun], result: ChangeResult) -> None:
        """Insert runs, results in order. Plain runs of a batch (no flow control beyond
        concurrency, no idempotency key or events) go in with one executemany per table."""
        if len(runs) <= 1:
            for run in runs:
                result.runs.append(self._insert_run(tx, run, result))
            return
        run_rows: list[tuple[Any, ...]] = []
        item_rows: list[tuple[Any, ...]] = []
        wake_before = now_ms() + WAKE_WITHIN_MS
        for run in runs:
            if (not admission.only_concurrency(run) or run.idempotency is not None
                    or run.event_ids):
                result.runs.append(self._insert_run(tx, run, result))
                continue
            run_rows.append(_run_params(run))
            for item in run.items:
                item.run_id = run.id
                if run.flow is not None:
                    admission.set_item_concurrency(item, run.flow.concurrency)
                item_rows.append(_item_params(item, item.id or new_id()))
                if to_ms(item.due_at) <= wake_before:
                    tx.notify = True
            result.enqueued += len(run.items)
            result.outcomes.append("created")
            result.runs.append((_stored_run(run), True))
        if run_rows:
            tx.executemany(_RUN_INSERT, run_rows)
        if item_rows:
            tx.executemany(_ITEM_INSERT, item_rows)

    def _insert_run(self, tx: Tx, run: NewRun, result: ChangeResult) -> tuple[Run, bool]:
        if run.idempotency is not None:
            idem = run.idempotency
            now = to_ms(run.created_at)
            rows = tx.execute(
                "INSERT INTO idempotency_keys (scope, key, run_id, expires_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET "
                "run_id = excluded.run_id, expires_at = excluded.expires_at "
                "WHERE idempotency_keys.expires_at <= ? RETURNING run_id",
                (idem.scope, idem.key, run.id, to_ms(idem.expires_at), now))
            if not rows:
                existing = tx.execute(
                    f"SELECT {RUN_COLS} FROM runs WHERE id = (SELECT run_id FROM "
                    "idempotency_keys WHERE scope = ? AND key = ?)", (idem.scope, idem.key))
                if existing:
                    result.outcomes.append("duplicate")
                    return row_run(existing[0]), False
        decided = admission.admit(self, tx, run, result)
        if decided is not None:
            result.outcomes.append(decided[1])
            return decided[0]
        admission.prepare_items(tx, run)
        stored = self._insert_run_row(tx, run)
        for item in run.items:
            item.run_id = run.id
            self._insert_item(tx, item, result, inherit=False)
        result.outcomes.append("created")
        return stored

    def _insert_run_row(self, tx: Tx, run: NewRun) -> tuple[Run, bool]:
        tx.execute(_RUN_INSERT, _run_params(run))
        for event_id in run.event_ids:
            tx.execute("INSERT INTO run_events (event_id, run_id) VALUES (?, ?) "
                       "ON CONFLICT DO NOTHING", (event_id, run.id))
        return _stored_run(run), True

    def _patch_run(self, tx: Tx, patch: RunPatch) -> None:
        sets: list[str] = []
        params: list[Any] = []
        if patch.status is not None:
            sets.append("status = ?")
            params.append(patch.status.value)
        if patch.attempt is not None:
            sets.append("attempt = ?")
            params.append(patch.attempt)
        for column, value in (("output", patch.output), ("error", patch.error),
                              ("state", patch.state)):
            if value is not UNSET:
                sets.append(f"{column} = ?")
                params.append(dumps(value) if value is not None else None)
        if patch.started_at is not None:
            sets.append("started_at = COALESCE(started_at, ?)")
            params.append(to_ms(patch.started_at))
        if patch.ended_at is not None:
            sets.append("ended_at = ?")
            params.append(to_ms(patch.ended_at))

        sets.append("updated_at = ?")
        params.append(now_ms())
        guard, guard_params = "", []
        if patch.expect_state is not UNSET:
            guard, guard_params = " AND state = ?", [dumps(patch.expect_state or {})]
        tx.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ? AND status NOT IN "
                   f"{TERMINAL_SQL}{guard}", (*params, patch.run_id, *guard_params))
        if guard and tx.rowcount == 0:
            raise StaleRunError(f"run {patch.run_id} changed meanwhile (or has ended)")

    def _write_step(self, tx: Tx, step: StepWrite) -> None:
        def value(v: Any) -> Any:
            return None if v is UNSET or v is None else dumps(v)

        updates = ["name = excluded.name", "kind = excluded.kind", "status = excluded.status",
                   "attempts = excluded.attempts",
                   "started_at = COALESCE(steps.started_at, excluded.started_at)",
                   "ended_at = excluded.ended_at"]
        for column, v in (("input", step.input), ("output", step.output),
                          ("error", step.error), ("history", step.history)):
            if v is not UNSET:
                updates.append(f"{column} = excluded.{column}")
        tx.execute(
            f"INSERT INTO steps ({STEP_COLS}) VALUES (?, ?, ?, ?, ?, ?, "
            "(SELECT COALESCE(MAX(position) + 1, 0) FROM steps WHERE run_id = ?), "
            "?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, id) DO UPDATE SET "
            f"{', '.join(updates)} WHERE steps.status NOT IN ('completed', 'failed')",
            (step.run_id, step.id, step.name, step.kind.value, step.status.value, step.attempts,
             step.run_id, value(step.input), value(step.output), value(step.error),
             _ms(step.started_at), _ms(step.ended_at), value(step.history)))

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

    # -- leases and the queue ------------------------------------------------------------

    async def lease_renew(self, *, owner: str, until: datetime) -> int:
        """Extend every lease held by ``owner``; the number renewed."""
        def fn(tx: Tx) -> int:
            # Only live leases: an expired one may be rescued and re-claimed at any moment.
            tx.execute("UPDATE queue_items SET lease_expires_at = ? WHERE lease_owner = ? "
                       "AND lease_expires_at >= ?", (to_ms(until), owner, now_ms()))
            return tx.rowcount
        return await self._write(fn)

    async def lease_release(self, *, owner: str) -> int:
        """Hand back every lease ``owner`` holds (graceful shutdown); the number released."""
        def fn(tx: Tx) -> int:
            tx.execute("UPDATE queue_items SET lease_owner = NULL, lease_token = NULL, "
                       "lease_expires_at = NULL WHERE lease_owner = ?", (owner,))
            released = tx.rowcount
            if released:
                tx.notify = True
            return released
        return await self._write(fn)

    async def lease_expire_owned(self, *, owner_prefix: str, now: datetime) -> int:
        """Expire at ``now`` every lease whose owner starts with ``owner_prefix``."""
        def fn(tx: Tx) -> int:
            tx.execute("UPDATE queue_items SET lease_expires_at = ? WHERE lease_owner IS NOT "
                       "NULL AND substr(lease_owner, 1, ?) = ? AND lease_expires_at >= ?",
                       (to_ms(now) - 1, len(owner_prefix), owner_prefix, to_ms(now)))
            return tx.rowcount
        return await self._write(fn)

    async def lease_rescue_expired(self, *, now: datetime, max_expiries: int) -> list[Rescued]:
        """Make items with expired leases due again. An item past ``max_expiries`` is
        dropped, unless its run is live: then it is held back (due in
        ``EXHAUSTED_HOLD_MS``) for the caller to fail the run (``engine.runs``)."""
        def fn(tx: Tx) -> list[Rescued]:
            at = to_ms(now)
            rows = tx.execute(
                "UPDATE queue_items SET lease_owner = NULL, lease_token = NULL, "
                "lease_expires_at = NULL, expiries = expiries + 1, due_at = ? "
                "WHERE lease_owner IS NOT NULL AND lease_expires_at < ? "
                "RETURNING id, run_id, expiries, concurrency_key, concurrency_key2", (at, at))
            out: list[Rescued] = []
            admission.unblock(self, tx, [k for r in rows for k in r[3:5]])
            for item_id, run_id, expiries, _, _ in rows:
                exhausted = expiries >= max_expiries
                if exhausted:
                    live = run_id is not None and tx.execute(
                        f"SELECT 1 FROM runs WHERE id = ? AND status NOT IN {TERMINAL_SQL}",
                        (run_id,))
                    if live:
                        tx.execute("UPDATE queue_items SET due_at = ? WHERE id = ?",
                                   (at + EXHAUSTED_HOLD_MS, item_id))
                    else:
                        tx.execute("DELETE FROM queue_items WHERE id = ?", (item_id,))
                out.append(Rescued(item_id, run_id, expiries, exhausted))
            record_restarts(tx, [r.run_id for r in out], now)
            if rows:
                tx.notify = True
            return out
        return await self._write(fn)

    async def queue_claim(
        self, *, owner: str, token: str, now: datetime, limit: int, lease_until: datetime,
        kinds: tuple[ItemKind, ...] | None = None,
    ) -> list[QueueItem]:
        """Lease up to ``limit`` due items, earliest first; marks their runs running."""
        kind_values = [k.value for k in kinds] if kinds else []
        sql = self._claim_sql(len(kind_values))

        def fn(tx: Tx) -> list[QueueItem]:
            at = to_ms(now)
            rows = tx.execute(sql, (owner, token, to_ms(lease_until), at, *kind_values, limit))
            rows = ops.hold_paused(tx, rows, self.share_locked)  # paused functions, queues
            items = [row_item(r) for r in rows]
            keyed = [(r[0], r[3], lim) for r in rows
                     if (lim := admission.item_limits((r[10], *r[11:14])))]
            if keyed:
                revoked = admission.enforce_concurrency(self, tx, keyed, at)
                items = [i for i in items if i.id not in revoked]
            run_ids = [i.run_id for i in items if i.kind is ItemKind.RUN and i.run_id]
            if run_ids:
                tx.execute(
                    f"UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), "
                    f"updated_at = ? WHERE id IN {_in(run_ids)} AND status NOT IN "
                    f"{TERMINAL_SQL}", (at, at, *run_ids))
            items.sort(key=lambda i: i.due_at)
            return items
        return await self._write(fn)

    async def queue_depth(self) -> dict[str, int]:
        """Unleased items per queue name."""
        rows = await self._read(lambda tx: tx.execute(
            "SELECT queue, COUNT(*) FROM queue_items WHERE lease_owner IS NULL GROUP BY queue"))
        return {r[0]: r[1] for r in rows}

    async def queue_next_due(self) -> datetime | None:
        """When the earliest unleased item becomes due."""
        # ORDER BY ... LIMIT 1, not MIN(): PostgreSQL answered MIN() by reading the whole
        # ready index (every queued item, with heap fetches), on every scheduler sleep.
        rows = await self._read(lambda tx: tx.execute(
            "SELECT due_at FROM queue_items WHERE lease_owner IS NULL AND blocked = 0 "
            "ORDER BY due_at LIMIT 1"))
        return from_ms(rows[0][0]) if rows and rows[0][0] is not None else None

    async def queue_release(self, *, fence: Fence, due_at: datetime) -> bool:
        """Give a claimed item back, due at ``due_at``; False if the lease moved on."""
        def fn(tx: Tx) -> bool:
            rows = tx.execute(
                "UPDATE queue_items SET lease_owner = NULL, lease_token = NULL, "
                "lease_expires_at = NULL, due_at = ? WHERE id = ? AND lease_token = ? "
                "RETURNING concurrency_key, concurrency_key2",
                (to_ms(due_at), fence.item_id, fence.lease_token))
            tx.notify = True
            if rows:
                admission.unblock(self, tx, rows[0])
            return bool(rows)
        return await self._write(fn)

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


    # -- statistics for the dashboard and /metrics (read-only) ---------------------------

    async def function_stats(self, *, since: datetime, limit: int = 10_000) -> list[FunctionStat]:
        """Outcomes and duration percentiles per function of the latest ``limit`` runs ended
        at or after ``since`` (percentiles computed here: SQLite has no percentile_cont)."""
        rows = await self._read(lambda tx: tx.execute(
            "SELECT function_id, status, ended_at - started_at FROM runs "
            "WHERE ended_at IS NOT NULL AND ended_at >= ? ORDER BY ended_at DESC LIMIT ?",
            (to_ms(since), limit)))
        counts: dict[str, dict[str, int]] = {}
        durations: dict[str, list[int]] = {}
        for function_id, status, duration in rows:
            per = counts.setdefault(function_id, {"completed": 0, "failed": 0, "cancelled": 0})
            per[status] = per.get(status, 0) + 1
            if duration is not None and status != RunStatus.CANCELLED.value:
                durations.setdefault(function_id, []).append(int(duration))
        out: list[FunctionStat] = []
        for function_id in sorted(counts):
            values = sorted(durations.get(function_id, []))
            per = counts[function_id]
            out.append(FunctionStat(
                function_id=function_id, completed=per["completed"], failed=per["failed"],
                cancelled=per["cancelled"], p50_ms=_percentile(values, 50),
                p95_ms=_percentile(values, 95), p99_ms=_percentile(values, 99)))
        return out

    async def queue_stats(self, *, now: datetime) -> list[QueueStat]:
        """Queue items per (queue, function, kind): due, scheduled, leased, oldest due time."""
        at = to_ms(now)
        rows = await self._read(lambda tx: tx.execute(
            "SELECT q.queue, r.function_id, q.kind, "
            "SUM(CASE WHEN q.lease_owner IS NULL AND q.due_at <= ? THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN q.lease_owner IS NULL AND q.due_at > ? THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN q.lease_owner IS NOT NULL THEN 1 ELSE 0 END), "
            "MIN(CASE WHEN q.lease_owner IS NULL AND q.due_at <= ? THEN q.due_at END) "
            "FROM queue_items q LEFT JOIN runs r ON r.id = q.run_id "
            "GROUP BY q.queue, r.function_id, q.kind ORDER BY q.queue, r.function_id, q.kind",
            (at, at, at)))
        return [QueueStat(queue=r[0], function_id=r[1], kind=r[2], due=int(r[3] or 0),
                          scheduled=int(r[4] or 0), leased=int(r[5] or 0),
                          oldest_due_at=from_ms(r[6])) for r in rows]

    async def run_count_by_status(self) -> dict[tuple[str, str], int]:
        """The number of runs per ``(function_id, status)``."""
        rows = await self._read(lambda tx: tx.execute(
            "SELECT function_id, status, COUNT(*) FROM runs GROUP BY function_id, status"))
        return {(r[0], r[1]): int(r[2]) for r in rows}

    async def run_stats(self, *, since: datetime, bucket_s: int) -> list[RunBucket]:
        """Runs created and ended per time bucket since ``since``, oldest bucket first."""
        if bucket_s < 1:
            raise ValueError("bucket_s must be at least 1")
        size = int(bucket_s) * 1000
        start = to_ms(since)

        def fn(tx: Tx) -> list[RunBucket]:
            # The bucket size is an int we computed, inlined so both databases divide
            # integers (a bound parameter's type would be guessed differently).
            created = tx.execute(
                f"SELECT created_at / {size}, COUNT(*), AVG(started_at - created_at), "
                f"MAX(started_at - created_at) FROM runs WHERE created_at >= ? "
                f"GROUP BY created_at / {size}", (start,))
            ended = tx.execute(
                f"SELECT ended_at / {size}, status, COUNT(*) FROM runs "
                f"WHERE ended_at IS NOT NULL AND ended_at >= ? "
                f"GROUP BY ended_at / {size}, status", (start,))
            buckets: dict[int, dict[str, Any]] = {}
            for bucket, count, lag_avg, lag_max in created:
                buckets.setdefault(int(bucket), {}).update(
                    created=int(count), lag_avg_ms=None if lag_avg is None else float(lag_avg),
                    lag_max_ms=None if lag_max is None else int(lag_max))
            for bucket, status, count in ended:
                if status in ("completed", "failed", "cancelled"):
                    buckets.setdefault(int(bucket), {})[status] = int(count)
            return [RunBucket(start=_dt(b * size), **buckets[b]) for b in sorted(buckets)]
        return await self._read(fn)


def _percentile(sorted_values: list[int], pct: int) -> int | None:
    """The nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-pct * len(sorted_values) // 100))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def chunks(values: Iterable[T], size: int) -> Iterable[list[T]]:
    """Split ``values`` into lists of at most ``size``."""
    batch: list[T] = []
    for v in values:
        batch.append(v)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
