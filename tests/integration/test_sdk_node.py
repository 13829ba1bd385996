"""The official inngest npm SDK (TypeScript/Node) against a real offload engine.

A Node app (tests/integration/node_app/server.mjs, inngest@4.24.0 from npm, unmodified)
runs as a subprocess on loopback, pointed at offload by environment variables only.
Each scenario runs in dev mode and in production (signed) mode, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.engine import EngineProcess, free_port
from tests.support.poll import answers, eventually
from tests.support.settled import events_fanned_out

pytestmark = [pytest.mark.node, pytest.mark.slow]

APP_DIR = Path(__file__).parent / "node_app"
SIGNING_KEY = "signkey-test-" + "ab12" * 16
EVENT_KEY = "test-event-key"


def _require_node() -> None:
    problem = None
    if shutil.which("node") is None:
        problem = "node is not installed"
    elif not (APP_DIR / "node_modules" / "inngest").exists():
        problem = "npm packages missing: run scripts/services (npm ci in node_app)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(f"SKIPPING NODE SDK TESTS — {problem}")


class NodeApp:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/inngest"

    def start(self) -> NodeApp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
        env.update(self.env, PORT=str(self.port))
        self.proc = subprocess.Popen(["node", "server.mjs"], cwd=APP_DIR, env=env,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        eventually(lambda: answers(f"http://127.0.0.1:{self.port}/counts"), timeout=20,
                   interval=0.1, what="the node app to start",
                   detail=lambda: self.log.read_text()[-3000:])
        return self

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = httpx.get(f"http://127.0.0.1:{self.port}/counts").json()
        return result

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(params=["dev", "signed"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stack(tmp_path: Path, store_url: str, mode: str) -> Iterator[tuple[EngineProcess, NodeApp]]:
    _require_node()
    if mode == "dev":
        engine = EngineProcess(tmp_path / "engine", database_url=store_url).start()
        app_env = {"INNGEST_DEV": engine.url}
    else:
        engine = EngineProcess(
            tmp_path / "engine", database_url=store_url, mode="serve", args=["--insecure"],
            env={"OFFLOAD_SIGNING_KEY": SIGNING_KEY, "OFFLOAD_EVENT_KEYS": EVENT_KEY,
                 "OFFLOAD_OUTBOUND_ALLOW": "127.0.0.0/8"}).start()
        app_env = {"INNGEST_BASE_URL": engine.url, "INNGEST_SIGNING_KEY": SIGNING_KEY,
                   "INNGEST_EVENT_KEY": EVENT_KEY, "INNGEST_DEV": "0"}
    app = NodeApp(app_env, tmp_path / "node.log").start()
    try:
        r = httpx.post(f"{engine.url}/v1/apps", json={"url": app.url}, timeout=30)
        assert r.status_code in (200, 201), r.text
        yield engine, app
    finally:
        app.stop()
        engine.kill()


def send(engine: EngineProcess, name: str, data: dict[str, Any] | None = None) -> str:
    r = httpx.post(f"{engine.url}/e/{EVENT_KEY}", json={"name": name, "data": data or {}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == 200
    return str(body["ids"][0])


def runs_of(engine: EngineProcess, function_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{engine.url}/v1/runs", params={"function_id": function_id})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


def finished_run(engine: EngineProcess, function_id: str, timeout: float = 30) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        for run in runs_of(engine, function_id):
            if run["status"] in ("completed", "failed", "cancelled"):
                full: dict[str, Any] = httpx.get(f"{engine.url}/v1/runs/{run['id']}").json()
                return full
        return None

    return eventually(probe, timeout=timeout, interval=0.1,
                      what=f"a finished run of {function_id}",
                      detail=lambda: runs_of(engine, function_id))


def run_for(engine: EngineProcess, event_id: str, timeout: float = 30) -> dict[str, Any]:
    """The run the event started, once it has ended."""
    def probe() -> dict[str, Any] | None:
        runs = httpx.get(f"{engine.url}/v1/events/{event_id}").json().get("runs") or []
        if runs:
            run: dict[str, Any] = httpx.get(f"{engine.url}/v1/runs/{runs[0]['id']}/wait",
                                            params={"timeout": 10}).json()
            if run["status"] in ("completed", "failed", "cancelled"):
                return run
        return None

    return eventually(probe, timeout=timeout, interval=0.1,
                      what=f"event {event_id} to start a finished run")


def test_node_sdk_timeouts_failures_and_cron(stack: tuple[EngineProcess, NodeApp]) -> None:
    engine, _ = stack
    timed_out = send(engine, "node/wait", {"id": 99, "timeout": "1s"})
    failing = send(engine, "node/invoke", {"n": 1, "fail": True})
    slow = send(engine, "node/invoke", {"n": 1, "slow": True, "timeout": "1s"})
    assert run_for(engine, timed_out)["output"] == {"matched": None}
    out = run_for(engine, failing)["output"]
    assert "child refused" in out["error"], out
    out = run_for(engine, slow)["output"]
    assert "timed out" in out["error"].lower() or "timeout" in out["error"].lower(), out
    nightly = next(f for f in httpx.get(f"{engine.url}/v1/functions").json()["data"]
                   if f["id"] == "node-app-nightly")
    assert nightly["crons"][0]["cron"] == "TZ=Europe/Paris 0 3 * * *"
    assert nightly["next_fire_at"]


def test_node_sdk_run_survives_engine_sigkill(stack: tuple[EngineProcess, NodeApp]) -> None:
    engine, app = stack
    event_id = send(engine, "node/steady", {"k": "a"})

    def sleeping() -> bool:
        runs = httpx.get(f"{engine.url}/v1/events/{event_id}").json().get("runs") or []
        return bool(runs) and runs[0]["status"] == "sleeping"

    eventually(sleeping, timeout=20, what=f"the run of event {event_id} to be sleeping",
               detail=lambda: httpx.get(f"{engine.url}/v1/events/{event_id}").json())
    engine.kill()
    engine.start()
    run = run_for(engine, event_id)
    assert run["status"] == "completed" and run["output"] == 3
    counts = app.counts()
    assert (counts["steady.a.one"], counts["steady.a.two"]) == (1, 1)


def test_node_sdk_scenarios(stack: tuple[EngineProcess, NodeApp]) -> None:
    engine, app = stack
    fns = httpx.get(f"{engine.url}/v1/functions").json()["data"]
    assert {"node-app-sequential", "node-app-parallel"} <= {f["id"] for f in fns}

    send(engine, "node/sequential", {"n": 4})
    send(engine, "node/shapes")
    send(engine, "node/sleep")
    send(engine, "node/wait", {"id": 7})
    send(engine, "node/parallel")
    send(engine, "node/flaky")
    send(engine, "node/doomed")
    send(engine, "node/later")
    send(engine, "node/nosteps", {"k": [1, "ü", None]})
    send(engine, "node/multi.b")
    send(engine, "node/invoke", {"n": 21})

    run = finished_run(engine, "node-app-sequential")
    assert run["status"] == "completed", run
    assert run["output"] == {"a": 5, "b": 10, "tag": "ü✓"}
    assert [s["status"] for s in run["steps"]] == ["completed"] * 3

    run = finished_run(engine, "node-app-shapes")
    assert run["output"]["out"] == [None, True, 0, -1.5, "", "text ü", [], [1, [2, {}]],
                                    {"a": {"b": [None]}}]
    assert (run["output"]["dup1"], run["output"]["dup2"]) == ("first", "second")

    run = finished_run(engine, "node-app-parallel")
    assert run["output"] == 6
    counts = app.counts()
    assert all(counts[f"parallel.{k}"] == 1 for k in "xyz"), counts
    assert counts["parallel.sum"] == 1

    # wait-for-event: a non-matching event is ignored, the matching one resumes the run
    eventually(lambda: [r for r in runs_of(engine, "node-app-waiter") if r["status"] == "waiting"],
               timeout=30, what="the node-app-waiter run to be waiting")
    send(engine, "node/wait.fulfil", {"id": 8})
    events_fanned_out(lambda path: httpx.get(f"{engine.url}{path}"))  # it has met the wait
    assert runs_of(engine, "node-app-waiter")[0]["status"] == "waiting"
    send(engine, "node/wait.fulfil", {"id": 7, "ok": True})
    run = finished_run(engine, "node-app-waiter")
    assert run["output"] == {"matched": {"id": 7, "ok": True}}

    assert finished_run(engine, "node-app-flaky")["output"] == "ok after retries"
    assert app.counts()["flaky.maybe"] == 3

    run = finished_run(engine, "node-app-doomed")
    assert run["status"] == "failed"
    assert "no way" in run["error"]["message"]
    assert finished_run(engine, "node-app-doomed-failure")["status"] == "completed"

    assert finished_run(engine, "node-app-later")["output"] == "done"
    assert finished_run(engine, "node-app-nosteps")["output"] == {"echo": {"k": [1, "ü", None]}}
    assert finished_run(engine, "node-app-multi")["output"] == "node/multi.b"
    assert finished_run(engine, "node-app-parent")["output"] == {"result": 42}

    run = finished_run(engine, "node-app-sleeper")
    assert run["output"] == "woke"
    assert {s["kind"] for s in run["steps"]} >= {"sleep", "run"}
