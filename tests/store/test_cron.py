"""Cron: one run per (function, tick), however many engines fire it."""

from __future__ import annotations

import asyncio
from typing import Any

from offload.store.base import Change

from .conftest import at, claim_all, count, new_run


def _tick(function_id: str, tick: float, run_id: str) -> Change:
    return Change(cron_tick=(function_id, at(tick)),
                  runs=[new_run(id=run_id, function_id=function_id, created_at=at(tick))])


async def test_apply__cron_tick_unique_per_function_and_tick(store: Any) -> None:
    first = await store.apply(_tick("cron-a", 60, "r1"))
    assert first.cron_fired is True and first.runs[0][0].id == "r1"
    second = await store.apply(_tick("cron-a", 60, "r2"))
    assert second.cron_fired is False and second.runs == [] and second.enqueued == 0
    assert await store.run_get(run_id="r2") is None
    # another tick, or another function at the same tick, fires
    assert (await store.apply(_tick("cron-a", 120, "r3"))).cron_fired is True
    assert (await store.apply(_tick("cron-b", 60, "r4"))).cron_fired is True
    assert sorted(i.run_id for i in await claim_all(store)) == ["r1", "r3", "r4"]


async def test_apply__cron_tick_concurrent_fires_once(store: Any) -> None:
    results = await asyncio.gather(*(store.apply(_tick("cron-a", 60, f"r{i}"))
                                     for i in range(10)))
    assert sum(r.cron_fired for r in results) == 1
    assert await count(store, "runs") == 1


async def test_cron_last_tick(store: Any) -> None:
    assert await store.cron_last_tick(function_id="cron-a") is None
    await store.apply(_tick("cron-a", 120, "r1"))
    await store.apply(_tick("cron-a", 60, "r2"))
    await store.apply(_tick("cron-b", 600, "r3"))
    assert await store.cron_last_tick(function_id="cron-a") == at(120)
