"""SQLite store: one writer thread with group commit, a small pool of reader threads.

SQLite allows one writer at a time, so every write goes through one thread
that drains whatever is waiting and commits it as one transaction, each job
inside its own SAVEPOINT (a failing job rolls back alone). One fsync then
covers many acknowledgements: that is the group commit behind "accepted means
durable" at thousands of writes a second. WAL lets readers run alongside.

Several processes may share the file (``offload serve --workers N``: API front
processes beside one executor). Their writer threads take turns on a ``flock`` of
``<file>-wlock`` around each transaction, which wakes the next writer as soon as the
lock is free (SQLite's own busy handler would sleep 1, 2, 5... ms between tries); the
busy timeout stays for other programs writing to the file. Work committed in a
process that claims nothing is announced to the one that does with a datagram on an
abstract unix socket named after the file (the SQLite counterpart of PostgreSQL's
``NOTIFY``; :mod:`offload.wakes`): the process whose scheduler listens binds it.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from offload.clock import now_ms
from offload.errors import StoreError, StoreFullError, StoreUnavailableError
from offload.store.migrate import load_migrations, pending
from offload.store.rows import Tx
from offload.store.sql import SqlStore
from offload.wakes import Inbox, Outbox, work_address

T = TypeVar("T")
_MAX_BATCH = 512
log = logging.getLogger("offload.store")


class _SqliteTx(Tx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._rowcount = 0
        self.notify = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn.execute(sql, tuple(params))
        rows = cur.fetchall() if cur.description else []
        self._rowcount = cur.rowcount
        return rows

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        cur = self._conn.executemany(sql, rows)
        self._rowcount = cur.rowcount

    @property
    def rowcount(self) -> int:
        return self._rowcount


_Job = tuple[Callable[[Tx], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class SqliteStore(SqlStore):
    """The embedded store: a file in WAL mode. ``durable`` selects synchronous=FULL."""

    def __init__(self, path: str | Path, *, durable: bool = True, readers: int = 2) -> None:
        super().__init__()
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.durable = durable
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="offload-read")
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_in: Inbox | None = None
        """Bound while this process's scheduler listens: other processes' wake-ups."""
        self._wake_out = Outbox()
        self._wake_address = work_address(self.path)
        self._wlock: int | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    async def open(self) -> None:
        """Create the file if needed, apply migrations and start the writer (once)."""
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        conn = self._connect()
        try:
            self._migrate(conn)
        finally:
            conn.close()
        self._wlock = os.open(f"{self.path}-wlock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._writer = threading.Thread(target=self._write_loop, name="offload-sqlite-writer",
                                        daemon=True)
        self._writer.start()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS offload_schema (version INTEGER PRIMARY KEY, "
                     "name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
        conn.execute("BEGIN IMMEDIATE")
        try:
            applied = {r[0] for r in conn.execute("SELECT version FROM offload_schema")}
            for migration in pending(applied, load_migrations("sqlite")):
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO offload_schema VALUES (?, ?, ?)",
                             (migration.version, migration.name, now_ms()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        """Finish queued writes and close every connection."""
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        self._readers.shutdown(wait=True)
        if self._wake_in is not None:
            self._wake_in.close()
            self._wake_in = None
        if self._wlock is not None:
            os.close(self._wlock)
            self._wlock = None
        self._wake_out.close()

    # -- wake-ups across processes ----------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Also hear of work committed by other processes on this file (see the module)."""
        super().add_listener(callback)
        if self._wake_in is not None:
            return
        loop = self._loop or asyncio.get_running_loop()
        try:
            self._wake_in = Inbox.bind(self._wake_address, loop,
                                       lambda _: self._notify_listeners())
        except OSError as exc:
            log.warning("another process claims work from this SQLite file; wake-ups from "
                        "other processes go to it", extra={"error": str(exc)})

    def _send_wake(self) -> None:
        """Tell the process claiming work from this file (if any) that work was committed."""
        # No one listening, or its queue full of wake-ups it has not read yet: either way
        # nothing is lost (the scheduler also looks every WAKE_WITHIN_MS).
        self._wake_out.send(self._wake_address, b"w")

    # -- backend hooks -------------------------------------------------------------------

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        if self._writer is None:
            raise StoreUnavailableError("the store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, future, loop))
        return await future

    async def _read(self, fn: Callable[[Tx], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_in_thread, fn)

    def _read_in_thread(self, fn: Callable[[Tx], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        try:
            return fn(_SqliteTx(conn))
        except sqlite3.Error as exc:
            raise _wrap(exc) from exc

    def _claim_sql(self, kinds: int) -> str:
        kind_clause = f"AND kind IN ({', '.join('?' * kinds)})" if kinds else ""
        return (
            "UPDATE queue_items SET lease_owner = ?, lease_token = ?, lease_expires_at = ? "
            "WHERE id IN (SELECT id FROM queue_items WHERE lease_owner IS NULL AND blocked = 0 "
            f"AND due_at <= ? {kind_clause} ORDER BY due_at LIMIT ?) RETURNING id, kind, "
            "run_id, due_at, priority, queue, payload, lease_token, lease_expires_at, expiries, "
            "concurrency_key, concurrency_limit, concurrency_key2, concurrency_limit2"
        )

    # -- the writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        conn = self._connect()
        stop = False
        while not stop:
            first = self._jobs.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._run_batch(conn, batch)
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        notify = False
        if self._wlock is not None:
            fcntl.flock(self._wlock, fcntl.LOCK_EX)
        try:
            conn.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:
                # Alone in the transaction: a failure rolls back the whole of it, so no
                # SAVEPOINT is needed.
                tx = _SqliteTx(conn)
                try:
                    value = batch[0][0](tx)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    outcomes.append((None, _wrap(exc)))
                else:
                    conn.execute("COMMIT")
                    outcomes.append((value, None))
                    notify = tx.notify
            else:
                for fn, _, _ in batch:
                    tx = _SqliteTx(conn)
                    conn.execute("SAVEPOINT job")
                    try:
                        value = fn(tx)
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                        outcomes.append((None, _wrap(exc)))
                    else:
                        conn.execute("RELEASE job")
                        outcomes.append((value, None))
                        notify = notify or tx.notify
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = _full(exc) or StoreUnavailableError(f"sqlite commit failed: {exc}")
            outcomes = [(None, failure) for _ in batch]
            notify = False
        finally:
            if self._wlock is not None:
                fcntl.flock(self._wlock, fcntl.LOCK_UN)
        if notify and not self._listeners:
            self._send_wake()  # this process claims nothing: wake the one that does
            notify = False
        # One hand-off per event loop (not one per job): each call_soon_threadsafe
        # writes to the loop's self-pipe.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Settlement]] = {}
        for (_, future, loop), (value, error) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, value, error))
        listeners = self._notify_listeners if notify and self._loop is not None else None
        for loop, settlements in by_loop.items():
            loop.call_soon_threadsafe(
                _settle_all, settlements, listeners if loop is self._loop else None)
        if listeners is not None and self._loop not in by_loop:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(listeners)


_Settlement = tuple["asyncio.Future[Any]", Any, BaseException | None]


def _settle_all(settlements: list[_Settlement], then: Callable[[], None] | None) -> None:
    for future, value, error in settlements:
        _settle(future, value, error)
    if then is not None:
        then()


_SQLITE_FULL = 13


def _full(exc: BaseException) -> StoreFullError | None:
    """A clear error for SQLITE_FULL (the disk or the file system's quota is full)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if (isinstance(code, int) and code & 0xFF == _SQLITE_FULL) or "disk is full" in str(exc):
        return StoreFullError(f"the database's disk is full (sqlite: {exc})")
    return None


def _wrap(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        return _full(exc) or StoreError(f"sqlite: {exc}")
    return exc


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
