"""Kill the engine at each named crash point (``offload.faults``) and check its promise.

``docs/guarantees.md`` §2 "crash at each named point": the engine sends itself
SIGKILL at the armed point (``OFFLOAD_TEST_CRASH_AT=point[:key]``), is restarted
(with the next point armed, keyed to other work), and the work resumes:

==================  ==========================================================
point               promise after restart
==================  ==========================================================
write.uncommitted   nothing of the attempt was written; the call is repeated
                    once (same ``webhook-id``); one result recorded
run.claimed         the call had not happened; it happens once
call.returned       the result was lost with the process; the call is repeated
                    once (same ``webhook-id``); one result recorded
write.committed     the result stands; the target is not called again; the
                    callback (committed with the result) is delivered once
fanout.computed     nothing was started; after restart the event starts its
                    function exactly once
==================  ==========================================================

One test per store walks all five points with one engine data dir (6 starts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from offload.models import App, Function
from offload.protocol.function_config import load_function_config
from offload.store import open_store
from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.settled import events_fanned_out, queue_drained
from tests.support.target import Target

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

FN_ID = "crash-fanout-fn"
EVENT = "crash.fanout"


def _sync_function(store_url: str, app_url: str) -> None:
    """A function triggered by EVENT (registered straight in the store: no SDK needed)."""
    async def sync() -> None:
        store = open_store(store_url)
        await store.open()
        at = datetime.now(UTC)
        app = App(id="crash-app", url=app_url, sdk="test", framework=None, app_version=None,
                  checksum=None, sync_error=None, synced_at=at, created_at=at, updated_at=at)
        config = {"id": FN_ID, "name": FN_ID, "triggers": [{"event": EVENT}],
                  "steps": {"step": {"id": "step", "name": "step", "runtime": {
                      "type": "http", "url": f"{app_url}?fnId={FN_ID}"}}}}
        fn = Function(id=FN_ID, app_id=app.id, name=FN_ID, created_at=at, updated_at=at,
                      config=config, spec=load_function_config(config))
        await store.app_sync(app=app, functions=[fn])
        await store.close()
    asyncio.run(sync())


def _until(what: str, check: Callable[[], bool], engine: EngineProcess,
           timeout: float = 30) -> None:
    eventually(check, timeout=timeout, what=what, detail=lambda: "\n" + engine.logs())


def _died(engine: EngineProcess) -> bool:
    return engine.proc is not None and engine.proc.poll() is not None


def _start(data: Path, store_url: str, crash: str | None) -> EngineProcess:
    env = {"OFFLOAD_LEASE_S": "30"}
    if crash:
        env["OFFLOAD_TEST_CRASH_AT"] = crash
    return EngineProcess(data, database_url=store_url, env=env).start()


def _status(engine: EngineProcess, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = httpx.get(f"{engine.url}/v1/runs/{run_id}", timeout=10).json()
    return run


def test_each_crash_point_keeps_its_promise(store_url: str, tmp_path: Path) -> None:
    target = Target().start()
    data = tmp_path / "data"
    _sync_function(store_url, f"{target.url}/app")
    calls = lambda n: target.at(f"/t/{n}")  # noqa: E731
    callbacks = lambda n: target.at(f"/cb/{n}")  # noqa: E731
    points = ["write.uncommitted", "run.claimed", "call.returned", "write.committed"]
    ids: dict[int, str] = {}
    engine: EngineProcess | None = None
    try:
        for n, point in enumerate(points):
            queue = f"p{n}"
            engine = _start(data, store_url, point if n == 0 else f"{point}:{queue}")
            if n:  # the previous point's task completes on the restarted engine
                _until(f"task {n - 1} to complete after the restart",
                       lambda: _status(engine, ids[n - 1])["status"] == "completed", engine)
            response = httpx.post(f"{engine.url}/v1/tasks", json={
                "url": f"{target.url}/t/{n}", "queue": queue, "retries": 5,
                "callback_url": f"{target.url}/cb/{n}"}, timeout=10)
            assert response.status_code == 202, response.text
            ids[n] = response.json()["id"]
            _until(f"the engine to die at {point}", lambda: _died(engine), engine)
            assert engine.proc is not None and engine.proc.returncode == -9
            expected_calls = 0 if point == "run.claimed" else 1
            assert len(calls(n)) == expected_calls, point
            assert len(callbacks(n)) == 0, point
        # fan-out: the event is accepted, the engine dies before the runs are written
        engine = _start(data, store_url, f"fanout.computed:{EVENT}")
        last = len(points) - 1
        _until("the committed task's callback", lambda: len(callbacks(last)) == 1, engine)
        event_id = httpx.post(f"{engine.url}/v1/events", json={"name": EVENT},
                              timeout=10).json()["ids"][0]
        _until("the engine to die at fanout.computed", lambda: _died(engine), engine)
        # the last restart, nothing armed: everything completes
        engine = _start(data, store_url, None)
        for n in range(len(points)):
            _until(f"task {n} completed", lambda n=n: _status(engine, ids[n])["status"]
                   == "completed", engine)
            _until(f"task {n}'s callback", lambda n=n: len(callbacks(n)) >= 1, engine)
        _until("the event's fan-out", lambda: len(httpx.get(
            f"{engine.url}/v1/events/{event_id}", timeout=10).json()["runs"]) >= 1, engine)
        # nothing is left that could call again: every task queue is empty (each call and
        # callback is a queue item) and every event has been fanned out
        with httpx.Client(base_url=engine.url, timeout=10) as api:
            for n in range(len(points)):
                queue_drained(api, f"p{n}")
            events_fanned_out(api.get)

        repeats = {point: len(calls(n)) for n, point in enumerate(points)}
        assert repeats == {"write.uncommitted": 2, "run.claimed": 1, "call.returned": 2,
                           "write.committed": 1}, repeats
        for n in range(len(points)):
            ids_seen = {r.headers["webhook-id"] for r in calls(n)}
            assert len(ids_seen) == 1, "a repeated call must carry the same webhook-id"
            run = _status(engine, ids[n])
            assert [s["id"] for s in run["steps"]].count("request") == 1, run["steps"]
            assert len(callbacks(n)) == 1, f"callback of task {n} delivered more than once"
        runs = httpx.get(f"{engine.url}/v1/runs", params={"function_id": FN_ID},
                         timeout=10).json()["data"]
        assert len(runs) == 1 and runs[0]["event_ids"] == [event_id], runs
    finally:
        if engine is not None:
            engine.kill()
        target.stop()


def test_durable_step_crash_after_the_call_runs_the_step_again_and_records_it_once(
        sqlite_url: str, tmp_path: Path) -> None:
    """``call.returned`` on a durable function (official Python SDK): the app ran the step,
    the engine died before recording it; after restart the step runs once more and is
    recorded once (at-least-once steps, exactly-once records). SQLite only: the store
    side of the promise is checked on both stores by the HTTP-task walk above."""
    import os
    import subprocess
    import sys

    from tests.support.engine import free_port

    app_script = Path(__file__).parent / "apps" / "chaos_app.py"
    data = tmp_path / "data"
    engine = _start(data, sqlite_url, None)
    app_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env["INNGEST_DEV"] = engine.url
    app = subprocess.Popen([sys.executable, str(app_script), "--port", str(app_port)], env=env,
                           stdout=(tmp_path / "app.log").open("ab"), stderr=subprocess.STDOUT)
    app_url = f"http://127.0.0.1:{app_port}"
    try:
        _until("the app", lambda: _answers(f"{app_url}/counts"), engine)
        synced = httpx.post(f"{engine.url}/v1/apps", json={"url": f"{app_url}/api/inngest"},
                            timeout=30)
        assert synced.status_code == 200, synced.text
        first = _run_of(engine, "chaos/limited")  # learns the function's id
        _until("a first run", lambda: _status(engine, first)["status"] == "completed", engine)
        function_id = _status(engine, first)["function_id"]
        engine.kill()
        armed = {"OFFLOAD_LEASE_S": "30", "OFFLOAD_TEST_CRASH_AT": f"call.returned:{function_id}"}
        engine = EngineProcess(data, database_url=sqlite_url, port=engine.port, env=armed).start()
        event_id = httpx.post(f"{engine.url}/v1/events", json={"name": "chaos/limited"},
                              timeout=10).json()["ids"][0]
        _until("the engine to die at call.returned", lambda: _died(engine), engine)
        ran = {k: v for k, v in httpx.get(f"{app_url}/counts", timeout=10).json().items()
               if k.endswith("/work") and not k.startswith(first)}
        assert list(ran.values()) == [1], ran  # the step ran; its result was not recorded
        engine = EngineProcess(data, database_url=sqlite_url, port=engine.port).start()
        runs = httpx.get(f"{engine.url}/v1/events/{event_id}", timeout=10).json()["runs"]
        run_id = runs[0]["id"]
        work = f"{run_id}/work"
        assert list(ran) == [work]
        _until("the run", lambda: _status(engine, run_id)["status"] == "completed", engine)
        run = _status(engine, run_id)
        assert [s["name"] for s in run["steps"]].count("work") == 1, run["steps"]
        assert httpx.get(f"{app_url}/counts", timeout=10).json()[work] == 2  # once more
    finally:
        app.kill()
        app.wait()
        engine.kill()


def _run_of(engine: EngineProcess, name: str) -> str:
    """Send event ``name``; the id of the run it starts."""
    event_id = httpx.post(f"{engine.url}/v1/events", json={"name": name},
                          timeout=10).json()["ids"][0]
    found: list[str] = []

    def started() -> bool:
        runs = httpx.get(f"{engine.url}/v1/events/{event_id}", timeout=10).json()["runs"]
        found[:] = [r["id"] for r in runs]
        return bool(found)
    _until("the event's run", started, engine)
    return found[0]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
