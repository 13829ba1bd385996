"""Versioned, forward-only migrations: ``migrations/<dialect>/NNNN_name.sql``.

Each file runs in its own transaction and is recorded in ``offload_schema``.
A database whose schema is newer than this code is refused, so an old engine
never writes to a schema it does not understand.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from offload.errors import SchemaVersionError


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    statements: list[str]


def load_migrations(dialect: str) -> list[Migration]:
    """The migrations of ``dialect`` ("sqlite" or "postgres") in version order."""
    folder = resources.files("offload.store").joinpath("migrations", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        version = int(entry.name.split("_", 1)[0])
        text = entry.read_text(encoding="utf-8")
        statements = [s.strip() for s in text.split(";\n") if _has_sql(s)]
        found.append(Migration(version, entry.name.removesuffix(".sql"), statements))
    return sorted(found, key=lambda m: m.version)


def _has_sql(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())


def pending(applied: set[int], available: list[Migration]) -> list[Migration]:
    """Migrations not yet applied; refuses a schema newer than the code."""
    newest_known = max((m.version for m in available), default=0)
    if applied and max(applied) > newest_known:
        raise SchemaVersionError(
            f"database schema version {max(applied)} is newer than this offload "
            f"(knows up to {newest_known}); upgrade offload"
        )
    return [m for m in available if m.version not in applied]
