"""Store reads behind the operator pages, on both databases: engine heartbeats and the
leases each engine holds, replays of runs (the failed view drains), capped counts for
bulk confirmations, and HTTP-task names."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from offload.models import EngineInfo, RunStatus
from offload.store.base import Change, RunFilter, RunPatch

from .conftest import T0, at, claim_one, create_run


def _engine(engine_id: str, beat: float) -> EngineInfo:
    return EngineInfo(id=engine_id, host="h1", pid=42, version="0.1.0", started_at=T0,
                      heartbeat_at=at(beat))


async def test_engines__heartbeat_upserts_lists_with_leases_and_prunes(store: Any) -> None:
    assert await store.engine_list() == []
    await store.engine_heartbeat(engine=_engine("engine-a", 1))
    await store.engine_heartbeat(engine=_engine("engine-b", 2))
    await store.engine_heartbeat(engine=replace(_engine("engine-a", 5), pid=99))
    await create_run(store)
    await claim_one(store, owner="engine-a")
    listed = await store.engine_list()
    assert [(e.id, e.heartbeat_at, e.leases) for e in listed] == [
        ("engine-a", at(5), 1), ("engine-b", at(2), 0)]
    assert listed[0].pid == 42  # a heartbeat moves the time only; the row is the first one
    assert listed[0].started_at == T0 and listed[0].host == "h1"

    assert await store.engine_prune(heartbeat_before=at(3)) == 1
    assert [e.id for e in await store.engine_list()] == ["engine-a"]
    await store.engine_delete(engine_id="engine-a")
    assert await store.engine_list() == []


async def test_run_replays__newest_replay_of_each_run(store: Any) -> None:
    failed = await create_run(store)
    other = await create_run(store)
    first = await create_run(store, replay_of=failed.id, created_at=at(1))
    second = await create_run(store, replay_of=failed.id, created_at=at(2))
    assert await store.run_replays(run_ids=[failed.id, other.id, failed.id]) == {
        failed.id: max(first.id, second.id)}
    assert await store.run_replays(run_ids=[]) == {}


async def test_run_filter__unreplayed_leaves_replayed_runs_out(store: Any) -> None:
    runs = [await create_run(store) for _ in range(3)]
    await store.apply(Change(run_patches=[
        RunPatch(run_id=r.id, status=RunStatus.FAILED, ended_at=at(1)) for r in runs]))
    replay = await create_run(store, replay_of=runs[0].id)
    failed = RunFilter(statuses=(RunStatus.FAILED,), unreplayed=True)
    page = await store.run_list(filter=failed, cursor=None, limit=10)
    assert {r.id for r in page.data} == {runs[1].id, runs[2].id}
    assert await store.run_count(filter=failed) == 2
    everything = await store.run_list(filter=RunFilter(unreplayed=True), cursor=None, limit=10)
    assert runs[0].id not in {r.id for r in everything.data}
    assert replay.id in {r.id for r in everything.data}


async def test_run_count_upto__stops_at_the_cap(store: Any) -> None:
    for _ in range(5):
        await create_run(store, function_id="capped")
    only = RunFilter(function_id="capped")
    assert await store.run_count_upto(filter=only, limit=100) == 5
    assert await store.run_count_upto(filter=only, limit=3) == 3
    assert await store.run_count_upto(filter=RunFilter(function_id="none"), limit=3) == 0


async def test_names__stored_returned_and_filtered(store: Any) -> None:
    named = await create_run(store, function_id="http", name="nightly")
    await create_run(store, function_id="http", name="other")
    await create_run(store, function_id="http")
    assert named.name == "nightly"
    got = await store.run_get(run_id=named.id)
    assert got is not None and got.name == "nightly"
    page = await store.run_list(filter=RunFilter(name="nightly"), cursor=None, limit=10)
    assert [r.id for r in page.data] == [named.id]


async def test_rescue__records_a_restart_on_the_live_run(store: Any) -> None:
    from offload.api.shapes import run_json

    run = await create_run(store)
    await claim_one(store, now=at(1), owner="engine-dead", lease_until=at(5))
    rescued = await store.lease_rescue_expired(now=at(10), max_expiries=5)
    assert [r.run_id for r in rescued] == [run.id]
    got = await store.run_get(run_id=run.id)
    assert got is not None
    assert run_json(got)["restarts"] == [{"at": at(10).isoformat()}]

    await claim_one(store, now=at(11), owner="engine-b", lease_until=at(15))
    await store.lease_rescue_expired(now=at(20), max_expiries=5)
    got = await store.run_get(run_id=run.id)
    assert got is not None and len(run_json(got)["restarts"]) == 2
    fresh = await create_run(store)
    got = await store.run_get(run_id=fresh.id)
    assert got is not None and run_json(got)["restarts"] == []
