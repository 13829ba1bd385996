"""API keys, apps and functions: what operators and app syncs register."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from offload.clock import to_ms
from offload.models import ApiKey, App, Function
from offload.store.rows import (
    APP_COLS,
    FUNCTION_COLS,
    KEY_COLS,
    Tx,
    _in,
    _ms,
    dumps,
    row_app,
    row_function,
    row_key,
)
from offload.store.sql.dialect import Dialect

T = TypeVar("T")


class Registry(Dialect):
    """``api_key_*``, ``app_*`` and ``function_*``."""

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
