"""Runs: creation through apply(), idempotency keys, patches, cancel, list, prune."""

from __future__ import annotations

from typing import Any

from offload.errors import LeaseLostError
from offload.ids import new_id
from offload.models import ItemKind, RunStatus, StepKind, StepStatus
from offload.store.base import (
    Change,
    Fence,
    Idempotency,
    NewEvent,
    NewItem,
    NewWait,
    RunFilter,
    RunPatch,
    StepWrite,
)

from .conftest import FAR, T0, at, claim_all, claim_one, count, create_run, new_run, snapshot


def _idem(key: str = "k1", expires: float = 3600) -> Idempotency:
    return Idempotency(scope="fn", key=key, expires_at=at(expires))


# -- apply: runs ---------------------------------------------------------------------


async def test_apply__creates_run_with_its_items(store: Any) -> None:
    result = await store.apply(Change(runs=[new_run(id="r1", input={"a": 1}, queue="q1",
                                                    event_ids=["e1"], state={"s": 2})]))
    run, created = result.runs[0]
    assert created and result.enqueued == 1
    stored = await store.run_get(run_id="r1")
    assert stored is not None
    assert stored.status is RunStatus.QUEUED and stored.attempt == 0
    assert stored.input == {"a": 1} and stored.state == {"s": 2}
    assert stored.event_ids == ["e1"] and stored.queue == "q1"
    assert stored.created_at == T0 and stored.steps == []
    assert run.id == stored.id and run.input == stored.input
    items = await claim_all(store)
    assert [(i.kind, i.run_id) for i in items] == [(ItemKind.RUN, "r1")]


async def test_apply__idempotency_key_returns_first_run(store: Any) -> None:
    first = await store.apply(Change(runs=[new_run(id="r1", idempotency=_idem())]))
    second = await store.apply(Change(runs=[new_run(id="r2", idempotency=_idem(),
                                                    created_at=at(10))]))
    assert first.runs[0][1] is True
    run, created = second.runs[0]
    assert created is False and run.id == "r1"
    assert run.idempotency_key == "k1"
    assert second.enqueued == 0
    assert await store.run_get(run_id="r2") is None
    assert [i.run_id for i in await claim_all(store)] == ["r1"]


async def test_apply__idempotency_key_scoped(store: Any) -> None:
    await store.apply(Change(runs=[new_run(id="r1", idempotency=_idem())]))
    other = await store.apply(Change(runs=[new_run(
        id="r2", idempotency=Idempotency(scope="other", key="k1", expires_at=at(3600)))]))
    assert other.runs[0][1] is True


async def test_apply__expired_idempotency_key_makes_new_run(store: Any) -> None:
    await store.apply(Change(runs=[new_run(id="r1", idempotency=_idem(expires=60))]))
    later = await store.apply(Change(runs=[new_run(id="r2", created_at=at(61),
                                                   idempotency=_idem(expires=3600))]))
    run, created = later.runs[0]
    assert created is True and run.id == "r2"
    # the key now points at the new run
    again = await store.apply(Change(runs=[new_run(id="r3", created_at=at(62),
                                                   idempotency=_idem())]))
    assert again.runs[0][0].id == "r2" and again.runs[0][1] is False
    assert sorted(i.run_id for i in await claim_all(store)) == ["r1", "r2"]


async def test_apply__concurrent_same_idempotency_key_one_run(store: Any) -> None:
    import asyncio

    results = await asyncio.gather(*(
        store.apply(Change(runs=[new_run(id=f"r{i}", idempotency=_idem())]))
        for i in range(10)))
    created = [r.runs[0][0].id for r in results if r.runs[0][1]]
    assert len(created) == 1
    assert {r.runs[0][0].id for r in results} == set(created)
    assert await count(store, "runs") == 1
    assert await count(store, "queue_items") == 1


# -- apply: fences -------------------------------------------------------------------


async def test_apply__fence_deletes_item_and_commits(store: Any) -> None:
    await create_run(store, id="r1")
    _, fence = await claim_one(store)
    await store.apply(Change(fence=fence, run_patches=[RunPatch(
        run_id="r1", status=RunStatus.COMPLETED, output=1, ended_at=at(1))]))
    assert await count(store, "queue_items") == 0
    run = await store.run_get(run_id="r1")
    assert run is not None and run.status is RunStatus.COMPLETED and run.output == 1


async def test_apply__fence_keep_item(store: Any) -> None:
    await create_run(store, id="r1")
    item, fence = await claim_one(store)
    await store.apply(Change(fence=fence, keep_fenced_item=True, run_patches=[
        RunPatch(run_id="r1", state={"x": 1})]))
    assert await count(store, "queue_items", "id = ? AND lease_token = ?",
                       (item.id, fence.lease_token)) == 1


def _everything(run_id: str) -> Change:
    """A change touching every table apply() writes."""
    return Change(
        events=[NewEvent(id=new_id(), name="e", data={}, ts=0, received_at=T0,
                         external_id="x1")],
        runs=[new_run(idempotency=_idem("fenced"))],
        run_patches=[RunPatch(run_id=run_id, status=RunStatus.COMPLETED, output=1,
                              ended_at=at(1))],
        steps=[StepWrite(run_id=run_id, id="s1", name="s1", kind=StepKind.RUN,
                         status=StepStatus.COMPLETED, output=1)],
        items=[NewItem(kind=ItemKind.CALLBACK, due_at=T0, run_id=run_id)],
        waits=[NewWait(id="w9", run_id=run_id, step_id="s2", created_at=T0, event_name="e")],
        delete_waits_of_runs=[run_id],
        cron_tick=("cron-fn", T0),
    )


async def test_apply__fence_wrong_token_raises_and_writes_nothing(store: Any) -> None:
    await create_run(store, id="r1")
    item, _ = await claim_one(store)
    before = await snapshot(store)
    for keep in (False, True):
        change = _everything("r1")
        change.fence = Fence(item.id, "not-the-token")
        change.keep_fenced_item = keep
        try:
            await store.apply(change)
        except LeaseLostError:
            pass
        else:
            raise AssertionError("LeaseLostError not raised")
        assert await snapshot(store) == before


async def test_apply__fence_item_gone_raises_and_writes_nothing(store: Any) -> None:
    await create_run(store, id="r1")
    _, fence = await claim_one(store)
    await store.apply(Change(fence=fence))  # the item is consumed
    before = await snapshot(store)
    for keep in (False, True):
        change = _everything("r1")
        change.fence = fence
        change.keep_fenced_item = keep
        try:
            await store.apply(change)
        except LeaseLostError:
            pass
        else:
            raise AssertionError("LeaseLostError not raised")
        assert await snapshot(store) == before


async def test_apply__fence_after_rescue_and_reclaim_raises(store: Any) -> None:
    await create_run(store, id="r1")
    _, old = await claim_one(store, now=at(0), lease_until=at(30))
    await store.lease_rescue_expired(now=at(31), max_expiries=5)
    _, new = await claim_one(store, now=at(31), owner="engine-2")
    try:
        await store.apply(Change(fence=old, run_patches=[RunPatch(
            run_id="r1", status=RunStatus.COMPLETED, ended_at=at(32))]))
    except LeaseLostError:
        pass
    else:
        raise AssertionError("stale fence accepted")
    run = await store.run_get(run_id="r1")
    assert run is not None and run.status is RunStatus.RUNNING
    await store.apply(Change(fence=new))  # the live lease still works


# -- apply: run patches --------------------------------------------------------------


async def test_apply__run_patch_sets_fields(store: Any) -> None:
    await create_run(store, id="r1")
    await store.apply(Change(run_patches=[RunPatch(
        run_id="r1", status=RunStatus.SLEEPING, attempt=2, state={"k": "v"},
        started_at=at(1))]))
    run = await store.run_get(run_id="r1")
    assert run is not None
    assert (run.status, run.attempt, run.state, run.started_at) == (
        RunStatus.SLEEPING, 2, {"k": "v"}, at(1))
    # started_at is kept from the first start; UNSET fields are left alone
    await store.apply(Change(run_patches=[RunPatch(run_id="r1", started_at=at(5),
                                                   output={"o": 1})]))
    run = await store.run_get(run_id="r1")
    assert run is not None
    assert run.started_at == at(1) and run.state == {"k": "v"} and run.output == {"o": 1}
    assert run.status is RunStatus.SLEEPING and run.attempt == 2


async def test_apply__run_patch_never_changes_terminal_run(store: Any) -> None:
    for i, terminal in enumerate((RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)):
        run_id = f"r{i}"
        await create_run(store, id=run_id)
        await store.apply(Change(run_patches=[RunPatch(
            run_id=run_id, status=terminal, output="first", ended_at=at(1))]))
        await store.apply(Change(run_patches=[RunPatch(
            run_id=run_id, status=RunStatus.RUNNING, output="second", error={"name": "x"},
            attempt=9, ended_at=at(2))]))
        run = await store.run_get(run_id=run_id)
        assert run is not None
        assert (run.status, run.output, run.error, run.attempt, run.ended_at) == (
            terminal, "first", None, 0, at(1))


# -- run_cancel ----------------------------------------------------------------------


async def test_run_cancel__drops_items_and_waits_keeps_callbacks(store: Any) -> None:
    await create_run(store, id="r1")
    await create_run(store, id="r2")
    await store.apply(Change(
        items=[NewItem(kind=ItemKind.CALLBACK, due_at=T0, run_id="r1"),
               NewItem(kind=ItemKind.WAIT_TIMEOUT, due_at=at(60), run_id="r1")],
        waits=[NewWait(id="w1", run_id="r1", step_id="s", created_at=T0, event_name="e"),
               NewWait(id="w2", run_id="r2", step_id="s", created_at=T0, event_name="e")]))
    run = await store.run_cancel(
        run_id="r1", at=at(5), error={"name": "cancelled"})
    assert run is not None
    assert run.status is RunStatus.CANCELLED and run.ended_at == at(5)
    assert run.error == {"name": "cancelled"}
    left = await claim_all(store)
    assert sorted((i.run_id, i.kind) for i in left) == [
        ("r1", ItemKind.CALLBACK), ("r2", ItemKind.RUN)]
    assert [w.id for w in await store.wait_list(event_name="e")] == ["w2"]


async def test_run_cancel__drops_claimed_item_so_fence_fails(store: Any) -> None:
    await create_run(store, id="r1")
    _, fence = await claim_one(store)
    assert await store.run_cancel(run_id="r1", at=at(1), error={"name": "c"}) is not None
    try:
        await store.apply(Change(fence=fence, run_patches=[RunPatch(
            run_id="r1", status=RunStatus.COMPLETED)]))
    except LeaseLostError:
        pass
    else:
        raise AssertionError("fence held after cancel")


async def test_run_cancel__ended_run_returns_none(store: Any) -> None:
    await create_run(store, id="r1")
    await store.apply(Change(run_patches=[RunPatch(run_id="r1", status=RunStatus.COMPLETED,
                                                   output=7, ended_at=at(1))]))
    await store.apply(Change(items=[NewItem(kind=ItemKind.CALLBACK, due_at=T0, run_id="r1")]))
    assert await store.run_cancel(run_id="r1", at=at(2), error={"name": "c"}) is None
    run = await store.run_get(run_id="r1")
    assert run is not None and run.status is RunStatus.COMPLETED and run.output == 7
    assert await store.run_cancel(run_id="missing", at=at(2), error={}) is None
    # a second cancel is a no-op too
    await create_run(store, id="r2")
    assert await store.run_cancel(run_id="r2", at=at(3), error={"name": "c"}) is not None
    assert await store.run_cancel(run_id="r2", at=at(4), error={"name": "c"}) is None


# -- run_get -------------------------------------------------------------------------


async def test_run_get__missing_and_without_steps(store: Any) -> None:
    assert await store.run_get(run_id="nope") is None
    await create_run(store, id="r1")
    await store.apply(Change(steps=[StepWrite(run_id="r1", id="s", name="s",
                                              kind=StepKind.RUN, status=StepStatus.RUNNING)]))
    with_steps = await store.run_get(run_id="r1")
    assert with_steps is not None and with_steps.steps is not None
    assert len(with_steps.steps) == 1
    bare = await store.run_get(run_id="r1", with_steps=False)
    assert bare is not None and bare.steps is None


# -- run_list ------------------------------------------------------------------------


async def _seed_list(store: Any) -> None:
    specs = [
        ("01A", "fa", "q1", RunStatus.QUEUED, None, ["e1"]),
        ("01B", "fa", "q2", RunStatus.COMPLETED, None, ["e1", "e2"]),
        ("01C", "fb", "q1", RunStatus.FAILED, {"name": "Boom", "message": "disk full"}, []),
        ("01D", "fb", None, RunStatus.RUNNING, None, ["e2"]),
        ("01E", "fa", "q1", RunStatus.FAILED, {"name": "Other", "message": "timeout"}, []),
    ]
    for i, (run_id, fn, queue, status, error, events) in enumerate(specs):
        await store.apply(Change(runs=[new_run(id=run_id, function_id=fn, queue=queue,
                                               created_at=at(i * 10), event_ids=events,
                                               item=False)]))
        if status is not RunStatus.QUEUED:
            await store.apply(Change(run_patches=[RunPatch(
                run_id=run_id, status=status, error=error if error else None)]))


async def _ids(store: Any, limit: int = 100, **filters: Any) -> list[str]:
    page = await store.run_list(filter=RunFilter(**filters), cursor=None, limit=limit)
    return [r.id for r in page.data]


async def test_run_list__newest_first_without_steps(store: Any) -> None:
    await _seed_list(store)
    page = await store.run_list(filter=RunFilter(), cursor=None, limit=100)
    assert [r.id for r in page.data] == ["01E", "01D", "01C", "01B", "01A"]
    assert page.next_cursor is None
    assert all(r.steps is None for r in page.data)


async def test_run_list__filters(store: Any) -> None:
    await _seed_list(store)
    assert await _ids(store, statuses=(RunStatus.FAILED,)) == ["01E", "01C"]
    assert await _ids(store, statuses=(RunStatus.QUEUED, RunStatus.RUNNING)) == ["01D", "01A"]
    assert await _ids(store, function_id="fb") == ["01D", "01C"]
    assert await _ids(store, queue="q1") == ["01E", "01C", "01A"]
    assert await _ids(store, event_id="e1") == ["01B", "01A"]
    assert await _ids(store, event_id="e2") == ["01D", "01B"]
    assert await _ids(store, created_after=at(10), created_before=at(30)) == ["01C", "01B"]
    assert await _ids(store, function_id="fa", statuses=(RunStatus.FAILED,)) == ["01E"]
    assert await _ids(store, function_id="nope") == []


async def test_run_list__search_by_id_or_error_text(store: Any) -> None:
    await _seed_list(store)
    assert await _ids(store, search="01B") == ["01B"]
    assert await _ids(store, search="disk full") == ["01C"]
    assert await _ids(store, search="Other") == ["01E"]
    assert await _ids(store, search="nothing like it") == []


async def test_run_list__cursor_pages_have_no_gaps_or_duplicates(store: Any) -> None:
    ids = [new_id() for _ in range(53)]
    for chunk in range(0, 53, 10):
        await store.apply(Change(runs=[new_run(id=i, item=False) for i in ids[chunk:chunk + 10]]))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await store.run_list(filter=RunFilter(), cursor=cursor, limit=10)
        pages += 1
        seen.extend(r.id for r in page.data)
        assert len(page.data) <= 10
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 6
    assert seen == sorted(ids, reverse=True)


async def test_run_list__exact_page_has_no_next_cursor(store: Any) -> None:
    await store.apply(Change(runs=[new_run(item=False) for _ in range(4)]))
    page = await store.run_list(filter=RunFilter(), cursor=None, limit=4)
    assert len(page.data) == 4 and page.next_cursor is None
    page = await store.run_list(filter=RunFilter(), cursor=None, limit=2)
    assert page.next_cursor is not None
    rest = await store.run_list(filter=RunFilter(), cursor=page.next_cursor, limit=2)
    assert len(rest.data) == 2 and rest.next_cursor is None


async def test_run_list__cursor_with_filter(store: Any) -> None:
    await _seed_list(store)
    first = await store.run_list(filter=RunFilter(function_id="fa"), cursor=None, limit=2)
    assert [r.id for r in first.data] == ["01E", "01B"]
    rest = await store.run_list(filter=RunFilter(function_id="fa"), cursor=first.next_cursor,
                                limit=2)
    assert [r.id for r in rest.data] == ["01A"] and rest.next_cursor is None


# -- run_prune -----------------------------------------------------------------------


async def test_run_prune__deletes_ended_runs_with_steps(store: Any) -> None:
    for run_id, ended in (("old1", at(10)), ("old2", at(20)), ("new", at(200))):
        await create_run(store, id=run_id, event_ids=["e"])
        await store.apply(Change(
            steps=[StepWrite(run_id=run_id, id="s", name="s", kind=StepKind.RUN,
                             status=StepStatus.COMPLETED, output=1)],
            run_patches=[RunPatch(run_id=run_id, status=RunStatus.COMPLETED, ended_at=ended)]))
    await create_run(store, id="live")
    deleted = await store.run_prune(ended_before=at(100), limit=100)
    assert deleted == 2
    assert await store.run_get(run_id="old1") is None
    assert await store.run_get(run_id="old2") is None
    for run_id in ("new", "live"):
        assert await store.run_get(run_id=run_id) is not None
    assert await count(store, "steps", "run_id IN ('old1', 'old2')") == 0
    assert await count(store, "run_events", "run_id IN ('old1', 'old2')") == 0
    assert await count(store, "queue_items", "run_id IN ('old1', 'old2')") == 0
    assert await count(store, "steps") == 1


async def test_run_prune__respects_limit(store: Any) -> None:
    for i in range(5):
        await create_run(store, id=f"r{i}", item=False)
        await store.apply(Change(run_patches=[RunPatch(run_id=f"r{i}",
                                                       status=RunStatus.FAILED,
                                                       ended_at=at(i))]))
    assert await store.run_prune(ended_before=at(100), limit=3) == 3
    assert await store.run_prune(ended_before=at(100), limit=3) == 2
    assert await store.run_prune(ended_before=at(100), limit=3) == 0


async def test_run_prune__deletes_old_events_and_expired_keys(store: Any) -> None:
    await store.apply(Change(events=[
        NewEvent(id="ev-old", name="e", data={}, ts=0, received_at=at(1), fanout=False),
        NewEvent(id="ev-new", name="e", data={}, ts=0, received_at=at(500), fanout=False)]))
    await store.apply(Change(runs=[new_run(id="r1", idempotency=_idem(expires=50))]))
    assert await store.run_prune(ended_before=at(100), limit=100) == 1
    assert await store.event_get(event_id="ev-old") is None
    assert await store.event_get(event_id="ev-new") is not None
    assert await count(store, "idempotency_keys") == 0
    assert await store.run_get(run_id="r1") is not None


async def test_run_prune__nothing_to_do(store: Any) -> None:
    assert await store.run_prune(ended_before=FAR, limit=10) == 0


# -- group commit and concurrency ----------------------------------------------------


async def test_apply__concurrent_changes_commit_or_fail_alone(store: Any) -> None:
    """500 concurrent apply() calls: SQLite commits them in groups, one SAVEPOINT each.

    Every seventh change carries a fence that does not hold and every eleventh fails
    half-way (its input is not JSON) after writing an event; each of those raises and
    leaves no trace, and every other change in the same group is committed.
    """
    import asyncio

    def change(i: int) -> Change:
        run = new_run(id=f"r{i:03}", input={"i": i})
        c = Change(runs=[run])
        if i % 7 == 0:
            c.fence = Fence(f"missing-{i}", "token")
        elif i % 11 == 0:
            c.events = [NewEvent(id=f"e{i:03}", name="half", data={}, ts=0, received_at=T0)]
            run.input = {"bad": {1, 2}}  # a set: orjson refuses it after the event insert
        return c

    sizes: list[int] = []
    if hasattr(store, "_run_batch"):  # SQLite: record group sizes to prove groups formed
        run_batch = store._run_batch

        def recording(conn: Any, batch: list[Any]) -> None:
            sizes.append(len(batch))
            run_batch(conn, batch)
        store._run_batch = recording
    results = await asyncio.gather(*(store.apply(change(i)) for i in range(500)),
                                   return_exceptions=True)
    if hasattr(store, "_run_batch"):
        assert max(sizes) > 1, sizes
    failed = {i for i, r in enumerate(results) if isinstance(r, BaseException)}
    fenced = {i for i in range(500) if i % 7 == 0}
    broken = {i for i in range(500) if i % 11 == 0} - fenced
    assert failed == fenced | broken
    assert all(isinstance(results[i], LeaseLostError) for i in fenced)
    assert all(isinstance(results[i], TypeError) for i in broken)
    ok = sorted(set(range(500)) - failed)
    assert await count(store, "runs") == len(ok)
    assert await count(store, "queue_items") == len(ok)
    assert await count(store, "events") == 0
    for i in (ok[0], ok[-1], 1, 499):
        run = await store.run_get(run_id=f"r{i:03}")
        assert run is not None and run.input == {"i": i}
