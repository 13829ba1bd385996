"""The real engine services in this process, on a real SQLite file, with fake time.

Each test builds the engine's Executor, HttpTasks, Triggers, Scheduler and run
lifecycle (``tests/support/inprocess.py``), talks to an in-process fake app and fake
HTTP targets through the outbound transport seam, and crosses backoffs, sleeps and
timeouts by moving a :class:`~offload.clock.FakeClock` — no subprocess, no socket,
no sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from offload.api.v1.tasks import TaskIn
from offload.models import RunStatus, StepStatus
from offload.store.base import Change
from tests.support.fake_app import FakeCtx, StepError
from tests.support.inprocess import InProcessEngine, in_process_engine

TARGET = "http://target.test/hook"


@pytest.fixture
async def eng(tmp_path: Path) -> AsyncIterator[InProcessEngine]:
    async with in_process_engine(tmp_path, max_lease_expiries=1, lease_s=30) as e:
        app = e.app

        @app.function("app-steps")
        def steps(ctx: FakeCtx) -> Any:
            a = ctx.run("a", lambda: "A")
            ctx.sleep("nap", "1h")
            b = ctx.run("b", lambda: a + "B")
            return {"b": b}

        @app.function("app-parent")
        def parent(ctx: FakeCtx) -> Any:
            try:
                return {"result": ctx.invoke("call", "app-child",
                                             ctx.event["data"].get("child") or {},
                                             timeout=ctx.event["data"].get("timeout"))}
            except StepError as err:
                return {"error": err.name}

        @app.function("app-child")
        def child(ctx: FakeCtx) -> Any:
            if ctx.event["data"].get("crash"):
                raise RuntimeError("the engine died during this call")
            ctx.sleep("nap", "1h")
            return "child done"

        @app.function("app-single")
        def single(ctx: FakeCtx) -> Any:
            ctx.sleep("nap", "1h")
            return "single done"

        @app.function("app-single-parent")
        def single_parent(ctx: FakeCtx) -> Any:
            try:
                return {"result": ctx.invoke("call", "app-single", {})}
            except StepError as err:
                return {"error": err.name}

        await e.sync(app.config("app-single", triggers=[{"event": "t/single"}], retries=0,
                                singleton={"key": "'one'", "mode": "cancel"}),
                     app.config("app-single-parent", triggers=[{"event": "t/single-parent"}],
                                retries=0),
                     app.config("app-steps", triggers=[{"event": "t/steps"}]),
                     app.config("app-parent", triggers=[{"event": "t/parent"}], retries=0),
                     app.config("app-child", retries=0,
                                timeouts={"finish": "10m"}))
        yield e


async def _start(eng: InProcessEngine, name: str, data: dict[str, Any] | None = None) -> str:
    [run] = await eng.runs_of(await eng.send(name, data))
    return run.id


async def _child_of(eng: InProcessEngine, parent_id: str) -> str:
    parent = await eng.run(parent_id)
    assert parent.status is RunStatus.WAITING, parent
    [step] = parent.steps or []
    return str(step.input["run_id"])


async def test_http_task__retry_after_is_waited_out_on_the_clock(eng: InProcessEngine) -> None:
    eng.app.script(TARGET, (503, {"retry-after": "120"}, b"busy"), (200, {}, b"ok"))
    task = TaskIn.model_validate({"url": TARGET, "retries": 3})
    result = await eng.store.apply(Change(runs=[task.new_run(eng.clock.now())]))
    run_id = result.runs[0][0].id
    await eng.settle()
    assert (await eng.run(run_id)).status is RunStatus.QUEUED
    await eng.advance(119)
    assert (await eng.run(run_id)).status is RunStatus.QUEUED
    assert len(eng.app.requests) == 1
    await eng.advance(1)
    run = await eng.run(run_id)
    assert run.status is RunStatus.COMPLETED and run.attempt == 2, run
    assert len(eng.app.requests) == 2


async def test_function__steps_around_an_hour_long_sleep(eng: InProcessEngine) -> None:
    run_id = await _start(eng, "t/steps")
    run = await eng.run(run_id)
    assert run.status is RunStatus.SLEEPING
    await eng.advance(3599)
    assert (await eng.run(run_id)).status is RunStatus.SLEEPING
    await eng.advance(1)
    run = await eng.run(run_id)
    assert run.status is RunStatus.COMPLETED and run.output == {"b": "AB"}, run
    assert [(s.id, s.status) for s in run.steps or []] == [
        ("a", StepStatus.COMPLETED), ("nap", StepStatus.COMPLETED), ("b", StepStatus.COMPLETED)]


async def _parent_resumed(eng: InProcessEngine, parent_id: str, error: str) -> None:
    await eng.settle()
    parent = await eng.run(parent_id)
    assert parent.status is RunStatus.COMPLETED, parent
    assert parent.output == {"error": error}
    finished = (await eng.store.event_list(name="inngest/function.finished", after=None,
                                           before=None, cursor=None, limit=100)).data
    assert [e.data["run_id"] for e in finished] == [parent_id, await _child_id(eng, parent)]


async def _child_id(eng: InProcessEngine, parent: Any) -> str:
    return str((parent.steps or [])[0].input["run_id"])


async def test_cancel__a_waiting_invoke_parent_resumes_once(eng: InProcessEngine) -> None:
    parent_id = await _start(eng, "t/parent")
    child_id = await _child_of(eng, parent_id)
    cancelled = await eng.engine.runs.cancel(child_id, "api")
    assert cancelled is not None and cancelled.status is RunStatus.CANCELLED
    assert await eng.engine.runs.cancel(child_id, "dashboard") is None  # ended once
    await _parent_resumed(eng, parent_id, "FunctionCancelledError")


async def test_finish_timeout__a_waiting_invoke_parent_resumes(eng: InProcessEngine) -> None:
    parent_id = await _start(eng, "t/parent")
    child_id = await _child_of(eng, parent_id)
    await eng.advance(599)
    assert (await eng.run(child_id)).status is RunStatus.SLEEPING
    await eng.advance(1)
    child = await eng.run(child_id)
    assert child.status is RunStatus.CANCELLED and child.error["name"] == "FinishTimeoutError"
    await _parent_resumed(eng, parent_id, "FinishTimeoutError")


async def test_invoke_timeout__resumes_the_parent_and_leaves_the_child(
        eng: InProcessEngine) -> None:
    parent_id = await _start(eng, "t/parent", {"timeout": "30s"})
    child_id = await _child_of(eng, parent_id)
    await eng.advance(30)
    parent = await eng.run(parent_id)
    assert parent.status is RunStatus.COMPLETED, parent
    assert parent.output == {"error": "InngestInvokeTimeoutError"}
    assert (await eng.run(child_id)).status is RunStatus.SLEEPING


async def test_lease_exhaustion__fails_the_child_and_resumes_the_parent(
        eng: InProcessEngine) -> None:
    # The child's first call "crashes the engine": its item stays leased, never renewed.
    parent_id = await _start(eng, "t/parent", {"child": {"crash": True}})
    child_id = await _child_of(eng, parent_id)
    assert (await eng.run(child_id)).status is RunStatus.RUNNING
    await eng.advance(31)
    [rescued] = await eng.engine.scheduler.rescue()
    assert rescued.exhausted and rescued.run_id == child_id
    child = await eng.run(child_id)
    assert child.status is RunStatus.FAILED and child.error["name"] == "lease_exhausted"
    await _parent_resumed(eng, parent_id, "lease_exhausted")


async def test_singleton_replacement__a_waiting_invoke_parent_resumes(
        eng: InProcessEngine) -> None:
    parent_id = await _start(eng, "t/single-parent")
    child_id = await _child_of(eng, parent_id)
    newer = await _start(eng, "t/single")  # cancel mode: the invoked child is replaced
    assert newer != child_id
    child = await eng.run(child_id)
    assert child.status is RunStatus.CANCELLED, child
    await _parent_resumed(eng, parent_id, child.error["name"])
