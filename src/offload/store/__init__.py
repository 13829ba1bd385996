"""Storage: the Store contract and its SQLite and PostgreSQL implementations."""

from __future__ import annotations

from offload.errors import ConfigError
from offload.store.base import Store


def open_store(url: str, *, durable: bool = True) -> Store:
    """A Store for ``url``: ``sqlite:///path`` or ``postgresql://…`` (not yet opened)."""
    if url.startswith(("postgresql://", "postgres://")):
        from offload.store.postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        from offload.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"), durable=durable)
    raise ConfigError(f"unsupported database URL scheme in {url.split(':', 1)[0]!r}; "
                      "use sqlite:///path or postgresql://")


__all__ = ["Store", "open_store"]
