"""SQLite durability settings: `serve` fsyncs every group commit, `dev` trades that for speed."""

from __future__ import annotations

from pathlib import Path

from offload.store.sqlite import SqliteStore

FULL, NORMAL = 2, 1


async def _synchronous(store: SqliteStore) -> int:
    rows = await store._write(lambda tx: tx.execute("PRAGMA synchronous"))
    return int(rows[0][0])


async def test_sqlite_durable_store_uses_synchronous_full(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "serve.db", durable=True)
    await store.open()
    try:
        assert await _synchronous(store) == FULL
        journal = await store._write(lambda tx: tx.execute("PRAGMA journal_mode"))
        assert journal[0][0] == "wal"
    finally:
        await store.close()


async def test_sqlite_dev_store_uses_synchronous_normal(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "dev.db", durable=False)
    await store.open()
    try:
        assert await _synchronous(store) == NORMAL
    finally:
        await store.close()


def test_engine_picks_durability_by_mode(tmp_path: Path) -> None:
    from offload.config import Settings
    from offload.engine import Engine

    serve = Engine(Settings(mode="serve", data_dir=tmp_path, insecure=True))
    dev = Engine(Settings(mode="dev", data_dir=tmp_path))
    assert isinstance(serve.store, SqliteStore) and serve.store.durable
    assert isinstance(dev.store, SqliteStore) and not dev.store.durable
