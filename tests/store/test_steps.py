"""Steps: written through apply(); the first completed write wins; kept in order."""

from __future__ import annotations

from typing import Any

from offload.models import StepKind, StepStatus
from offload.store.base import Change, StepWrite

from .conftest import at, create_run


def _step(step_id: str, status: StepStatus, run_id: str = "r1", **kw: Any) -> StepWrite:
    return StepWrite(run_id=run_id, id=step_id, name=kw.pop("name", step_id),
                     kind=kw.pop("kind", StepKind.RUN), status=status, **kw)


async def _steps(store: Any, run_id: str = "r1") -> list[Any]:
    run = await store.run_get(run_id=run_id)
    assert run is not None and run.steps is not None
    return run.steps


async def test_apply__step_insert_and_update(store: Any) -> None:
    await create_run(store, id="r1")
    await store.apply(Change(steps=[_step("s1", StepStatus.RUNNING, input={"i": 1},
                                          attempts=1, started_at=at(1))]))
    await store.apply(Change(steps=[_step("s1", StepStatus.ERRORED, attempts=1,
                                          error={"name": "E"})]))
    [s] = await _steps(store)
    assert (s.status, s.attempts, s.input, s.error, s.started_at) == (
        StepStatus.ERRORED, 1, {"i": 1}, {"name": "E"}, at(1))
    await store.apply(Change(steps=[_step("s1", StepStatus.COMPLETED, attempts=2,
                                          output=[1, 2], started_at=at(5), ended_at=at(6))]))
    [s] = await _steps(store)
    assert (s.status, s.attempts, s.input, s.output, s.started_at, s.ended_at) == (
        StepStatus.COMPLETED, 2, {"i": 1}, [1, 2], at(1), at(6))
    assert s.kind is StepKind.RUN and s.name == "s1" and s.run_id == "r1"


async def test_apply__step_first_completed_write_wins(store: Any) -> None:
    await create_run(store, id="r1")
    await store.apply(Change(steps=[_step("s1", StepStatus.COMPLETED, output="first",
                                          ended_at=at(1))]))
    for late in (_step("s1", StepStatus.COMPLETED, output="second", ended_at=at(2)),
                 _step("s1", StepStatus.RUNNING, output=None),
                 _step("s1", StepStatus.FAILED, error={"name": "E"}, ended_at=at(3))):
        await store.apply(Change(steps=[late]))
    [s] = await _steps(store)
    assert (s.status, s.output, s.error, s.ended_at) == (
        StepStatus.COMPLETED, "first", None, at(1))


async def test_apply__step_failed_is_final(store: Any) -> None:
    await create_run(store, id="r1")
    await store.apply(Change(steps=[_step("s1", StepStatus.FAILED, error={"name": "E"})]))
    await store.apply(Change(steps=[_step("s1", StepStatus.COMPLETED, output=1)]))
    [s] = await _steps(store)
    assert (s.status, s.output, s.error) == (StepStatus.FAILED, None, {"name": "E"})


async def test_apply__step_output_null_is_stored_as_null(store: Any) -> None:
    await create_run(store, id="r1")
    await store.apply(Change(steps=[_step("s1", StepStatus.COMPLETED, output=None)]))
    [s] = await _steps(store)
    assert s.status is StepStatus.COMPLETED and s.output is None


async def test_apply__steps_keep_position_order(store: Any) -> None:
    await create_run(store, id="r1")
    await create_run(store, id="r2")
    await store.apply(Change(steps=[_step("z", StepStatus.RUNNING),
                                    _step("a", StepStatus.COMPLETED)]))
    await store.apply(Change(steps=[_step("m", StepStatus.SLEEPING, kind=StepKind.SLEEP),
                                    _step("other", StepStatus.RUNNING, run_id="r2")]))
    # updating an earlier step does not move it
    await store.apply(Change(steps=[_step("z", StepStatus.COMPLETED, output=1)]))
    steps = await _steps(store)
    assert [(s.id, s.position) for s in steps] == [("z", 0), ("a", 1), ("m", 2)]
    assert [s.id for s in await _steps(store, "r2")] == ["other"]
    assert (await _steps(store, "r2"))[0].position == 0
