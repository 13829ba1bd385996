"""Helpers for the Store contract suite: fixed times, run and item builders, snapshots.

Every test here uses the ``store`` fixture from ``tests/conftest.py`` and so runs
once on SQLite and once on PostgreSQL. Times are fixed (``T0``) and passed in;
nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from offload.ids import new_id, new_token
from offload.models import ItemKind, QueueItem, Run
from offload.store.base import Change, Fence, NewItem, NewRun

T0 = datetime(2030, 1, 1, tzinfo=UTC)
FAR = datetime(2100, 1, 1, tzinfo=UTC)
TABLES = ("apps", "functions", "events", "runs", "run_events", "steps", "queue_items",
          "idempotency_keys", "waits", "cron_ticks", "api_keys")


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def new_run(*, id: str | None = None, function_id: str = "fn", created_at: datetime = T0,
            item: bool = True, queue: str | None = None, **kw: Any) -> NewRun:
    """A queued run with (by default) one RUN item due at its creation time."""
    items = ([NewItem(kind=ItemKind.RUN, due_at=created_at, queue=queue or "default")]
             if item else [])
    return NewRun(id=id or new_id(), function_id=function_id, created_at=created_at,
                  queue=queue, items=items, **kw)


async def create_run(store: Any, **kw: Any) -> Run:
    """Create one run through apply(); the stored Run."""
    result = await store.apply(Change(runs=[new_run(**kw)]))
    run, created = result.runs[0]
    assert created
    return run


async def claim_one(store: Any, *, now: datetime = FAR, owner: str = "engine-1",
                    lease_until: datetime | None = None,
                    kinds: tuple[ItemKind, ...] | None = None) -> tuple[QueueItem, Fence]:
    """Claim exactly one due item; the item and the fence for completing it."""
    token = new_token()
    items = await store.queue_claim(owner=owner, token=token, now=now, limit=1,
                                    lease_until=lease_until or now + timedelta(seconds=30),
                                    kinds=kinds)
    assert len(items) == 1, items
    return items[0], Fence(items[0].id, token)


async def claim_all(store: Any, *, now: datetime = FAR, owner: str = "engine-1",
                    kinds: tuple[ItemKind, ...] | None = None) -> list[QueueItem]:
    """Claim every item due at ``now``."""
    return await store.queue_claim(owner=owner, token=new_token(), now=now, limit=100_000,
                                   lease_until=now + timedelta(seconds=30), kinds=kinds)


async def snapshot(store: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: to prove a refused change wrote nothing."""
    def fn(tx: Any) -> dict[str, list[tuple[Any, ...]]]:
        return {t: sorted(tx.execute(f"SELECT * FROM {t}"), key=repr)  # noqa: S608
                for t in TABLES}
    return await store._read(fn)


async def count(store: Any, table: str, where: str = "1 = 1",
                params: tuple[Any, ...] = ()) -> int:
    """Rows of ``table`` matching ``where`` (``?`` placeholders)."""
    rows = await store._read(lambda tx: tx.execute(
        f"SELECT COUNT(*) FROM {table} WHERE {where}", params))  # noqa: S608
    return int(rows[0][0])


@pytest.fixture
def is_sqlite(store: Any) -> bool:
    """True on the SQLite store."""
    return str(store.url).startswith("sqlite")
