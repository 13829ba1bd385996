"""PostgreSQL store: many engine processes on many machines share one database.

Claims use ``FOR UPDATE SKIP LOCKED`` so engines never wait on each other;
a transaction that queues work sends ``NOTIFY offload_work`` and every engine
``LISTEN``s, so new work is picked up at once wherever it was accepted. The
queries are :class:`SqlStore`'s, run on pooled connections in worker threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from offload import faults
from offload.clock import now_ms, to_ms
from offload.errors import LeaseLostError, StaleRunError, StoreError, StoreUnavailableError
from offload.models import ItemKind, QueueItem
from offload.store import pg_claim, pg_commit
from offload.store.base import WAKE_WITHIN_MS, Change, ChangeResult
from offload.store.migrate import load_migrations, pending
from offload.store.rows import Tx
from offload.store.sql import SqlStore
from offload.store.sql.write import (
    _ITEM_INSERT,
    _RUN_INSERT,
    EVENT_INSERT,
    event_params,
    is_plain,
    plain_rows,
    stored_event,
    waited_item_params,
)

T = TypeVar("T")
CHANNEL = "offload_work"
_CONNECT_TIMEOUT_S = 3.0
"""How long a request waits for a database connection before answering 503."""
_FAIL_FAST_S = 1.0
_LOCK_ID = 0x6F66666C6F6164  # "offload": serialises migrations across engines


_PLAIN_INGEST = (
    # A new run without flow control (but concurrency), idempotency key or events, and
    # its queue item: one statement with scalar parameters, so one round trip and its own
    # transaction (autocommit); the NOTIFY is sent at its commit when the item is due soon.
    f"WITH r AS ({_RUN_INSERT}), i AS ({_ITEM_INSERT}) "
    f"SELECT pg_notify('{CHANNEL}', '') WHERE ?"
).replace("?", "%s")
_PLAIN_EVENT = (
    # One new event (deduplicated on its external id) with its fan-out item, and the
    # NOTIFY when that item is due soon: one statement in autocommit, one round trip. The
    # item and the NOTIFY hang on the event's insert: a duplicate writes nothing and
    # returns no row (the caller then takes the general path, which reads the original).
    f"WITH e AS ({EVENT_INSERT} RETURNING id), "
    "i AS (INSERT INTO queue_items (id, kind, run_id, due_at, priority, queue, payload, "
    "created_at) SELECT ?, 'event', NULL, ?, 0, 'default', ?, ? FROM e) "
    f"SELECT (SELECT pg_notify('{CHANNEL}', '') WHERE ?) IS NULL FROM e"
).replace("?", "%s")


class _PgTx(Tx):
    _cache: dict[str, str] = {}

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur
        self.notify = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        converted = self._cache.get(sql)
        if converted is None:
            converted = sql.replace("%", "%%").replace("?", "%s")
            self._cache[sql] = converted
        self._cur.execute(converted, tuple(params))
        return self._cur.fetchall() if self._cur.description else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        converted = self._cache.get(sql)
        if converted is None:
            converted = sql.replace("%", "%%").replace("?", "%s")
            self._cache[sql] = converted
        self._cur.executemany(converted, rows)  # pipelined: one round trip, not one per row

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def execute_one(self, plan: pg_commit.Plan) -> bool:
        """Run a one-trip change (its own implicit transaction); False if its fenced item
        holds a concurrency slot (nothing written: apply it the general way)."""
        query = plan.query()
        try:
            with psycopg.ClientCursor(self._cur.connection) as cur:
                cur.execute(query, plan.params)
        except psycopg.errors.InvalidTextRepresentation as exc:
            message = str(exc)
            if pg_commit.LEASE_LOST in message:
                raise LeaseLostError("lease on the queue item is no longer held") from None
            if pg_commit.STALE_RUN in message:
                raise StaleRunError("the run changed meanwhile (or has ended)") from None
            if pg_commit.KEYED in message:
                return False
            raise
        return True


class PostgresStore(SqlStore):
    """The shared store for several engines. ``url`` is a libpq URL."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        super().__init__()
        self.url = url
        self._pool_size = pool_size
        self._pool: ConnectionPool | None = None
        self._threads = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="offload-pg")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: threading.Thread | None = None
        self._closing = threading.Event()
        self._down_until = 0.0
        self._listening = threading.Event()
        self._one_claim_sql: dict[int, str] = {}

    async def open(self) -> None:
        """Connect, apply migrations and start listening for wake-ups (once)."""
        if self._pool is not None:
            return
        self._loop = asyncio.get_running_loop()
        try:
            self._pool = ConnectionPool(self.url, min_size=1, max_size=self._pool_size,
                                        open=False, kwargs={
                                            "autocommit": True,
                                            "connect_timeout": int(_CONNECT_TIMEOUT_S)})
            await asyncio.to_thread(self._pool.open, True, 10.0)
            await asyncio.to_thread(self._migrate)
        except (psycopg.Error, Exception) as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreUnavailableError(f"cannot reach PostgreSQL: {exc}") from exc
        self._listener = threading.Thread(target=self._listen_loop, name="offload-pg-listen",
                                          daemon=True)
        self._listener.start()
        # Return only once LISTEN is active, so no wake-up sent after open() is missed.
        await asyncio.to_thread(self._listening.wait, 10.0)

    def _migrate(self) -> None:
        assert self._pool is not None
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            conn.execute("CREATE TABLE IF NOT EXISTS offload_schema (version INTEGER PRIMARY KEY,"
                         " name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
            applied = {r[0] for r in conn.execute("SELECT version FROM offload_schema")}
            for migration in pending(applied, load_migrations("postgres")):
                for statement in migration.statements:
                    conn.execute(statement.encode())
                conn.execute("INSERT INTO offload_schema VALUES (%s, %s, %s)",
                             (migration.version, migration.name, now_ms()))

    async def close(self) -> None:
        """Stop listening and close the pool."""
        self._closing.set()
        if self._pool is not None:
            if self._listener is not None:
                await asyncio.to_thread(self._wake_listener)
            await asyncio.to_thread(self._pool.close)
            self._pool = None
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join, 5.0)
        self._threads.shutdown(wait=False)

    def _wake_listener(self) -> None:
        """Send one notification so the listener sees it is closing without waiting."""
        assert self._pool is not None
        try:
            with self._pool.connection(timeout=2.0) as conn:
                conn.execute(f"NOTIFY {CHANNEL}")
                conn.commit()
        except Exception:  # noqa: BLE001 - closing anyway; the listener times out in 1 s
            return

    def _listen_loop(self) -> None:
        while not self._closing.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    while not self._closing.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            if self._loop is not None:
                                self._loop.call_soon_threadsafe(self._notify_listeners)
            except psycopg.Error:
                self._closing.wait(1.0)

    # -- backend hooks -------------------------------------------------------------------

    async def queue_claim(
        self, *, owner: str, token: str, now: datetime, limit: int, lease_until: datetime,
        kinds: tuple[ItemKind, ...] | None = None,
    ) -> list[QueueItem]:
        """Lease up to ``limit`` due items; in one round trip (:mod:`offload.store.pg_claim`)
        unless a pause exists or a claimed item holds a concurrency key."""
        kind_values = [k.value for k in kinds] if kinds else []
        sql = self._one_claim_sql.get(len(kind_values))
        if sql is None:
            sql = self._one_claim_sql[len(kind_values)] = pg_claim.claim_sql(
                self._claim_sql(len(kind_values)))
        at = to_ms(now)
        params = (owner, token, to_ms(lease_until), at, *kind_values, limit, at, at)

        def claim(tx: Tx) -> list[QueueItem] | None:
            try:
                return pg_claim.claimed(tx.execute(sql, params))
            except psycopg.errors.InvalidTextRepresentation as exc:
                if pg_claim.GENERAL in str(exc):
                    return None
                raise

        items = await self._run(claim, write=False)
        if items is not None:
            return items
        return await super().queue_claim(owner=owner, token=token, now=now, limit=limit,
                                         lease_until=lease_until, kinds=kinds)

    async def apply(self, change: Change) -> ChangeResult:
        """Commit a change atomically; one new plain run (what ``POST /v1/tasks``
        mostly writes) and a fenced attempt's change in one round trip
        (:mod:`offload.store.pg_commit`), anything else statement by statement."""
        if len(change.events) == 1 and _one_plain_event(change):
            # One event (what ``POST /e`` mostly writes): one round trip instead of BEGIN,
            # two INSERTs, NOTIFY, COMMIT.
            event = await self._insert_plain_event(change)
            if event is not None:
                return event
        if len(change.runs) == 1 and _only_plain_runs(change):
            # One task: one round trip instead of BEGIN, two INSERTs, COMMIT. Batches stay
            # on executemany (pipelined): one statement over arrays measured slower there.
            plain = await self._insert_plain(change)
            if plain is not None:
                return plain
        one = pg_commit.plan(change)
        if one is None:
            return await super().apply(change)
        if change.steps:
            faults.crash_point("write.uncommitted")  # tests only: die before the commit
        def commit(tx: Tx) -> bool:
            assert isinstance(tx, _PgTx)
            return tx.execute_one(one)

        if await self._run(commit, write=False):
            return one.result
        return await super().apply(change)  # its item holds a concurrency slot

    async def _insert_plain(self, change: Change) -> ChangeResult | None:
        """Insert one plain run with one queue item in one statement; None (nothing
        written) for any other shape."""
        result = ChangeResult()
        run_rows: list[tuple[Any, ...]] = []
        item_rows: list[tuple[Any, ...]] = []
        wake = plain_rows(change.runs[0], run_rows, item_rows, result,
                          now_ms() + WAKE_WITHIN_MS)
        if len(item_rows) != 1:
            return None
        params = (*run_rows[0], *item_rows[0], wake)

        def insert(tx: Tx) -> None:
            assert isinstance(tx, _PgTx)
            tx._cur.execute(_PLAIN_INGEST, params)

        await self._run(insert, write=False)  # autocommit: the statement is the transaction
        return result

    async def _insert_plain_event(self, change: Change) -> ChangeResult | None:
        """Insert one new event with its fan-out item in one statement; None (nothing
        written) when its external id is taken already."""
        event = change.events[0]
        due = event.received_at
        params = (*event_params(event), *waited_item_params(event)[:4],
                  to_ms(due) <= now_ms() + WAKE_WITHIN_MS)

        def insert(tx: Tx) -> bool:
            assert isinstance(tx, _PgTx)
            tx._cur.execute(_PLAIN_EVENT, params)
            return bool(tx._cur.fetchall())

        if not await self._run(insert, write=False):  # autocommit: one transaction
            return None
        return ChangeResult(events=[(stored_event(event), True)], enqueued=1)

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        return await self._run(fn, write=True)

    async def _read(self, fn: Callable[[Tx], T]) -> T:
        return await self._run(fn, write=False)

    async def _run(self, fn: Callable[[Tx], T], *, write: bool) -> T:
        if self._pool is None:
            raise StoreUnavailableError("the store is not open")
        if time.monotonic() < self._down_until:
            # Fail fast for a moment after an outage is seen, instead of every request
            # waiting out a connection timeout; the next call after that tries again.
            raise StoreUnavailableError("PostgreSQL was unreachable moments ago")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._threads, self._in_thread, fn, write)
        except StoreUnavailableError:
            self._down_until = time.monotonic() + _FAIL_FAST_S
            raise

    def _in_thread(self, fn: Callable[[Tx], T], write: bool) -> T:
        assert self._pool is not None
        try:
            with self._pool.connection(timeout=_CONNECT_TIMEOUT_S) as conn:
                if not write:
                    # Reads run in autocommit: no BEGIN/COMMIT round trips around them.
                    with conn.cursor() as cur:
                        return fn(_PgTx(cur))
                with conn.transaction(), conn.cursor() as cur:
                    tx = _PgTx(cur)
                    value = fn(tx)
                    if tx.notify:
                        cur.execute(f"NOTIFY {CHANNEL}")
                return value
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"PostgreSQL unavailable: {exc}") from exc
        except psycopg.errors.SerializationFailure as exc:
            raise StoreError(f"PostgreSQL serialization failure: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL error: {exc}") from exc
        except Exception as exc:
            if "couldn't get a connection" in str(exc):
                raise StoreUnavailableError(f"PostgreSQL unavailable: {exc}") from exc
            raise

    def _claim_sql(self, kinds: int) -> str:
        kind_clause = f"AND kind IN ({', '.join('?' * kinds)})" if kinds else ""
        return (
            "UPDATE queue_items q SET lease_owner = ?, lease_token = ?, lease_expires_at = ? "
            "FROM (SELECT id FROM queue_items WHERE lease_owner IS NULL AND blocked = 0 AND "
            f"due_at <= ? {kind_clause} ORDER BY due_at LIMIT ? FOR UPDATE SKIP LOCKED) c "
            "WHERE q.id = c.id RETURNING q.id, q.kind, q.run_id, q.due_at, q.priority, q.queue, "
            "q.payload, q.lease_token, q.lease_expires_at, q.expiries, q.concurrency_key, "
            "q.concurrency_limit, q.concurrency_key2, q.concurrency_limit2"
        )

    skip_locked = " FOR UPDATE SKIP LOCKED"
    share_locked = " FOR SHARE"

    def _lock_keys(self, tx: Tx, keys: list[str]) -> None:
        """Advisory transaction locks on the keys, in the given (sorted) order."""
        if keys:
            tx.execute("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
                       "FROM unnest(?::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n",
                       (list(keys),))


def _only_plain_runs(change: Change) -> bool:
    """True for a change that only inserts plain runs (see ``is_plain``): equal to a
    change with nothing but its runs, so a field added to Change later is never skipped."""
    return change == Change(runs=change.runs) and all(is_plain(run) for run in change.runs)


def _one_plain_event(change: Change) -> bool:
    """True for a change that only inserts one event with a plain fan-out item (queued
    whatever waits exist): equal to a change with nothing but its events, so a field added
    to Change later is never skipped."""
    if len(change.events) != 1 or change != Change(events=change.events):
        return False
    event = change.events[0]
    return event.fanout and not event.fanout_if_waited
