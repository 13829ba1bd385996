"""Shared fixtures: a SQLite file per test, and a PostgreSQL schema per test.

PostgreSQL comes from ``OFFLOAD_TEST_POSTGRES_URL`` (default: the local server at
127.0.0.1:5432). When it cannot be reached the PostgreSQL tests are skipped with a
loud reason locally, and fail in CI (``CI`` set), so a green CI always means both
stores were exercised.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.target import Target

POSTGRES_URL = os.environ.get("OFFLOAD_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = bool(os.environ.get("CI"))


def _postgres_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001
        return str(exc).strip().splitlines()[0]


_PG_PROBLEM: str | None | bool = False


def require_postgres() -> None:
    """Skip (locally) or fail (in CI) when PostgreSQL is unreachable."""
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _postgres_reachable()
    if _PG_PROBLEM:
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable: {_PG_PROBLEM}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(f"SKIPPING POSTGRES TEST — {message}")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A libpq URL whose search_path is a fresh schema, dropped afterwards."""
    require_postgres()
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL schema of its own for one test."""
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_store_url(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Each store in turn, one database shared by a whole test module."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'offload.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite URL for a file in the test's temp dir."""
    return f"sqlite:///{tmp_path / 'offload.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store in turn: the test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'offload.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[object]:
    """An opened Store on each database."""
    from offload.store import open_store

    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def tag() -> str:
    """A name unique to the test, for its target paths and its queue."""
    return f"t{secrets.token_hex(5)}"


@pytest.fixture
def target() -> Iterator[Target]:
    """A loopback HTTP target for the test (files that script one per module define their own)."""
    t = Target().start()
    yield t
    t.stop()
