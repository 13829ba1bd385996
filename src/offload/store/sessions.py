"""Dashboard sessions held server-side (logout and password changes end them).

A mixin of :class:`offload.store.sql.SqlStore`; the SQL is the same on both databases.
Only a session id's hash is stored, so the table cannot be replayed as cookies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from offload.clock import to_ms

T = TypeVar("T")


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionQueries:
    """``dashboard_session_*`` methods over the backend's ``_read`` and ``_write``."""

    async def _write(self, fn: Callable[[Any], T]) -> T:  # supplied by SqlStore
        raise NotImplementedError

    async def _read(self, fn: Callable[[Any], T]) -> T:  # supplied by SqlStore
        raise NotImplementedError

    async def dashboard_session_insert(self, *, sid: str, login: str, credential: str,
                                       at: datetime, expires_at: datetime) -> None:
        """Record a new logged-in session (and forget expired ones)."""
        def fn(tx: Any) -> None:
            tx.execute("DELETE FROM dashboard_sessions WHERE expires_at < ?", (to_ms(at),))
            tx.execute("INSERT INTO dashboard_sessions (id, login, credential, created_at, "
                       "expires_at) VALUES (?, ?, ?, ?, ?)",
                       (_key(sid), login, credential, to_ms(at), to_ms(expires_at)))
        await self._write(fn)

    async def dashboard_session_credential(self, *, sid: str, at: datetime) -> str | None:
        """The credential fingerprint a live session was opened with; None if it ended."""
        rows = await self._read(lambda tx: tx.execute(
            "SELECT credential FROM dashboard_sessions WHERE id = ? AND expires_at >= ?",
            (_key(sid), to_ms(at))))
        return str(rows[0][0]) if rows else None

    async def dashboard_session_delete(self, *, sid: str | None = None) -> int:
        """End one session (logout), or every session (``sid`` None); how many ended."""
        def fn(tx: Any) -> int:
            if sid is None:
                tx.execute("DELETE FROM dashboard_sessions")
            else:
                tx.execute("DELETE FROM dashboard_sessions WHERE id = ?", (_key(sid),))
            return int(tx.rowcount)
        return await self._write(fn)
