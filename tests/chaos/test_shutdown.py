"""Graceful shutdown hands leases back, and a hanging target costs only its own slots."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.support.engine import EngineProcess
from tests.support.target import Target


def test_sigterm_releases_leases_so_work_resumes_at_once(tmp_path: Path, target: Target) -> None:
    # A long lease: work left leased by the stopped engine would wait 120 s to be rescued.
    env = {"OFFLOAD_LEASE_S": "120"}
    target.script("/slow", (200, {}, b"ok", 30.0))
    engine = EngineProcess(tmp_path / "e", env=env).start()
    api = httpx.Client(base_url=engine.url, timeout=30)
    ids = [api.post("/v1/tasks", json={"url": f"{target.url}/slow", "timeout": 60}).json()["id"]
           for _ in range(5)]
    target.wait_for(lambda: len(target.at("/slow")) >= 5)
    engine.kill(signal.SIGTERM)  # graceful: in-flight calls are cut after the grace period
    target.script("/slow", (200, {}, b"ok", 0.0))
    restarted = EngineProcess(tmp_path / "e", env=env, port=engine.port).start()
    try:
        started = time.monotonic()
        for run_id in ids:
            run = api.get(f"/v1/runs/{run_id}/wait", params={"timeout": 30}).json()
            assert run["status"] == "completed", run
        assert time.monotonic() - started < 30, "work waited for lease expiry"
    finally:
        restarted.kill()


def test_hanging_target_does_not_delay_other_work(tmp_path: Path, target: Target) -> None:
    target.script("/hang", (200, {}, b"late", 20.0))
    with EngineProcess(tmp_path / "e") as engine:
        api = httpx.Client(base_url=engine.url, timeout=30)
        r = api.post("/v1/tasks/batch", json={"tasks": [
            {"url": f"{target.url}/hang", "timeout": 30} for _ in range(40)]})
        assert r.status_code == 202
        target.wait_for(lambda: len(target.at("/hang")) >= 40)
        started = time.monotonic()
        fast = [api.post("/v1/tasks", json={"url": f"{target.url}/fast"}).json()["id"]
                for _ in range(20)]
        for run_id in fast:
            run = api.get(f"/v1/runs/{run_id}/wait", params={"timeout": 10}).json()
            assert run["status"] == "completed", run
        assert time.monotonic() - started < 5
