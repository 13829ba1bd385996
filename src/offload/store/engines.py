"""Engine heartbeats: each engine process upserts its row every few seconds.

A mixin of :class:`offload.store.sql.SqlStore`; the SQL is the same on both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from offload.clock import to_ms
from offload.models import EngineInfo

T = TypeVar("T")


def _dt(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


class EngineQueries:
    """``engine_*`` methods over the backend's ``_read`` and ``_write``."""

    async def _write(self, fn: Callable[[Any], T]) -> T:  # supplied by SqlStore
        raise NotImplementedError

    async def _read(self, fn: Callable[[Any], T]) -> T:  # supplied by SqlStore
        raise NotImplementedError

    async def engine_heartbeat(self, *, engine: EngineInfo) -> None:
        """Insert this engine's row, or move its heartbeat forward."""
        def fn(tx: Any) -> None:
            tx.execute(
                "INSERT INTO engines (id, host, pid, version, started_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "heartbeat_at = excluded.heartbeat_at",
                (engine.id, engine.host, engine.pid, engine.version,
                 to_ms(engine.started_at), to_ms(engine.heartbeat_at)))
        await self._write(fn)

    async def engine_delete(self, *, engine_id: str) -> None:
        """Forget an engine (it stopped cleanly)."""
        await self._write(lambda tx: tx.execute("DELETE FROM engines WHERE id = ?",
                                                (engine_id,)))

    async def engine_prune(self, *, heartbeat_before: datetime) -> int:
        """Forget engines silent since before ``heartbeat_before``; how many."""
        def fn(tx: Any) -> int:
            tx.execute("DELETE FROM engines WHERE heartbeat_at < ?", (to_ms(heartbeat_before),))
            return int(tx.rowcount)
        return await self._write(fn)

    async def engine_list(self) -> list[EngineInfo]:
        """Known engines, most recent heartbeat first, with the leases each holds."""
        def fn(tx: Any) -> list[EngineInfo]:
            rows = tx.execute(
                "SELECT e.id, e.host, e.pid, e.version, e.started_at, e.heartbeat_at, "
                "(SELECT COUNT(*) FROM queue_items q WHERE q.lease_owner = e.id) "
                "FROM engines e ORDER BY e.heartbeat_at DESC, e.id")
            return [EngineInfo(id=r[0], host=r[1], pid=int(r[2]), version=r[3],
                               started_at=_dt(r[4]), heartbeat_at=_dt(r[5]),
                               leases=int(r[6])) for r in rows]
        return await self._read(fn)
