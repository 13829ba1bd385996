"""Pausing and resuming queues and functions on real engine processes, both stores.

Paused: new runs are accepted and queued, none starts, in-flight attempts finish,
and the pause survives an engine restart. Resumed: the backlog starts in order
under the queue's concurrency limit. (A resumed backlog keeping to its throttle is
checked on the fake clock: tests/engine/test_flow_in_process.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.settled import held_by_pause
from tests.support.target import Target
from tests.support.tasks import submit

pytestmark = [pytest.mark.slow]


def _status(api: httpx.Client, run_id: str) -> str:
    status: str = api.get(f"/v1/runs/{run_id}").json()["status"]
    return status


def _wait_status(api: httpx.Client, run_id: str, status: str, timeout: float = 30) -> None:
    eventually(lambda: _status(api, run_id) == status, timeout=timeout, interval=0.1,
               what=f"run {run_id} to be {status}",
               detail=lambda: f"it is {_status(api, run_id)}")


def _queue(api: httpx.Client, name: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v1/queues/{name}").json()
    return body


def test_paused_queue_holds_runs_across_a_restart_and_resume_starts_them_in_order(
        store_url: str, target: Target, tmp_path: Path) -> None:
    target.script("/slow", (200, {}, b"ok", 1.5))
    engine = EngineProcess(tmp_path / "engine", database_url=store_url).start()
    try:
        api = httpx.Client(base_url=engine.url, timeout=30)
        # an attempt in flight when the pause comes finishes
        slow = submit(api, url=f"{target.url}/slow", queue="billing")
        target.wait_for(lambda: target.at("/slow"))
        paused = api.post("/v1/queues/billing/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] is True
        runs = [submit(api, url=f"{target.url}/job", queue="billing", concurrency=1,
                       body={"i": i})["id"] for i in range(5)]
        other = submit(api, url=f"{target.url}/other", queue="elsewhere")
        _wait_status(api, slow["id"], "completed")
        _wait_status(api, other["id"], "completed")
        held_by_pause(api, "billing", 5)  # the claim met each one and gave it back
        assert [_status(api, r) for r in runs] == ["queued"] * 5
        assert target.at("/job") == []
        state = _queue(api, "billing")
        assert state["paused"] and state["held"] == 5 and state["due"] == 0, state

        engine.kill()  # SIGKILL: the pause is stored, not in memory
        engine = EngineProcess(tmp_path / "engine", database_url=store_url).start()
        api = httpx.Client(base_url=engine.url, timeout=30)
        listed = {q["name"]: q for q in api.get("/v1/queues").json()["data"]}
        assert listed["billing"]["paused"] is True
        assert listed["billing"]["pause"]["paused_at"]
        assert 'offload_paused{kind="queue",target="billing"} 1.0' in api.get("/metrics").text
        # the new engine claims (earliest due first) a task queued after the held ones:
        # once it has run, the held runs were passed over, not started
        after = submit(api, url=f"{target.url}/other", queue="elsewhere")
        _wait_status(api, after["id"], "completed")
        assert [_status(api, r) for r in runs] == ["queued"] * 5
        assert _queue(api, "billing")["held"] == 5
        assert target.at("/job") == []

        resumed = api.post("/v1/queues/billing/resume")
        assert resumed.status_code == 200 and resumed.json()["paused"] is False
        for run_id in runs:
            _wait_status(api, run_id, "completed")
        order = [orjson.loads(r.body)["i"] for r in target.at("/job")]
        assert order == [0, 1, 2, 3, 4]  # in order, one at a time (concurrency 1)
        starts = [r.at for r in target.at("/job")]
        assert starts == sorted(starts)
    finally:
        engine.kill()


def test_pausing_the_http_function_from_the_cli(store_url: str, target: Target,
                                                tmp_path: Path) -> None:
    with EngineProcess(tmp_path / "engine", database_url=store_url) as engine:
        api = httpx.Client(base_url=engine.url, timeout=30)
        env = {**os.environ, "OFFLOAD_URL": engine.url}

        def cli(*args: str) -> str:
            out = subprocess.run([sys.executable, "-m", "offload", *args], env=env,
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr + out.stdout
            return out.stdout

        assert "function http: paused" in cli("pause", "function", "http")
        run = submit(api, url=f"{target.url}/held", queue="any")
        held_by_pause(api, "any", 1)
        assert _status(api, run["id"]) == "queued"
        queues = {q["name"]: q for q in json.loads(cli("queues", "--json"))["data"]}
        assert queues["any"]["held"] == 1 and queues["any"]["paused"] is False  # the function is
        assert "held" in cli("queues")
        assert "function http: running" in cli("resume", "function", "http")
        _wait_status(api, run["id"], "completed")
        # pausing twice and resuming something not paused are harmless
        cli("pause", "queue", "q1")
        cli("pause", "queue", "q1")
        cli("resume", "queue", "q1")
        assert "running" in cli("resume", "queue", "q1")


def test_pause_endpoints_refuse_bad_input(tmp_path: Path) -> None:
    with EngineProcess(tmp_path / "engine") as engine:
        api = httpx.Client(base_url=engine.url, timeout=30)
        missing = api.post("/v1/functions/no-such-fn/pause")
        assert missing.status_code == 404
        bad = api.post("/v1/queues/not%20a%20queue/pause")
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "path.name"
        long = api.post(f"/v1/queues/{'q' * 65}/pause")
        assert long.status_code == 422
        assert api.get("/v1/queues").json()["data"] == []  # nothing was written


def test_a_pause_holds_on_every_engine_sharing_postgres(target: Target, tmp_path: Path,
                                                        postgres_url: str) -> None:
    with EngineProcess(tmp_path / "a", database_url=postgres_url) as a, \
            EngineProcess(tmp_path / "b", database_url=postgres_url) as b:
        api_a = httpx.Client(base_url=a.url, timeout=30)
        api_b = httpx.Client(base_url=b.url, timeout=30)
        assert api_a.post("/v1/queues/shared/pause").status_code == 200
        assert _queue(api_b, "shared")["paused"] is True
        runs = [submit(api, url=f"{target.url}/shared", queue="shared")["id"]
                for api in (api_a, api_b, api_b)]
        held_by_pause(api_b, "shared", 3)  # met by a claim and given back, not started
        assert [_status(api_a, r) for r in runs] == ["queued"] * 3
        assert target.at("/shared") == []
        assert api_b.post("/v1/queues/shared/resume").status_code == 200
        for run_id in runs:
            _wait_status(api_a, run_id, "completed")
