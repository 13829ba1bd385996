"""What a backend supplies (transactions, the claim statement, locking clauses) and the
listeners woken when work may be due; the base of every part of :class:`SqlStore`."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TypeVar

from offload.store.rows import Tx

T = TypeVar("T")


class Dialect(abc.ABC):
    """The backend hooks every query module is written against."""

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
