"""Bulk replay and cancel through the API and the CLI, against a real engine, both stores."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.target import Target

pytestmark = [pytest.mark.slow]

N = 2000


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineProcess]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    with EngineProcess(tmp_path / "engine", database_url=url) as e:
        yield e


def _count(api: httpx.Client, **filters: Any) -> int:
    total, cursor = 0, None
    while True:
        page = api.get("/v1/runs", params={**filters, "limit": 500,
                                           **({"cursor": cursor} if cursor else {})}).json()
        total += len(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return total


def _wait_count(api: httpx.Client, expected: int, timeout: float = 120, **filters: Any) -> None:
    eventually(lambda: _count(api, **filters) >= expected, timeout=timeout, interval=0.5,
               what=f"{expected} runs with {filters}",
               detail=lambda: f"{_count(api, **filters)} found")


def test_bulk_replay_of_thousands_from_the_cli(engine: EngineProcess, target: Target) -> None:
    target.script("/flaky", (400, {}, b"not yet", 0.0))
    api = httpx.Client(base_url=engine.url, timeout=60)
    for _ in range(N // 1000):
        r = api.post("/v1/tasks/batch", json={"tasks": [
            {"url": f"{target.url}/flaky", "queue": "bulk", "body": {"i": i}}
            for i in range(1000)]})
        assert r.status_code == 202, r.text
    _wait_count(api, N, status="failed", queue="bulk")

    target.script("/flaky", (200, {}, b"ok", 0.0))
    env = {**os.environ, "OFFLOAD_URL": engine.url}
    out = subprocess.run([sys.executable, "-m", "offload", "replay", "--status", "failed",
                          "--queue", "bulk"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr + out.stdout
    assert f"completed: {N} of {N} runs replayed" in out.stdout
    # every failed run has exactly one replay, and the replays now succeed
    _wait_count(api, N, status="completed", queue="bulk", timeout=180)
    assert _count(api, status="failed", queue="bulk") == N


def test_bulk_cancel_through_the_api_reports_progress(engine: EngineProcess,
                                                      target: Target) -> None:
    api = httpx.Client(base_url=engine.url, timeout=60)
    r = api.post("/v1/tasks/batch", json={"tasks": [
        {"url": f"{target.url}/later", "queue": "later", "delay": 3600} for _ in range(450)]})
    assert r.status_code == 202
    started = api.post("/v1/runs/bulk", json={"action": "cancel",
                                               "filter": {"queue": "later",
                                                          "status": ["queued"]}})
    assert started.status_code == 202, started.text
    job = started.json()
    assert (job["total"], job["status"]) == (450, "running")
    job_id = job["id"]

    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(f"/v1/runs/bulk/{job_id}").json()
        return job if job["status"] != "running" else None

    job = eventually(finished, timeout=60, interval=0.2, what=f"bulk job {job_id} to finish",
                     detail=lambda: api.get(f"/v1/runs/bulk/{job_id}").json())
    assert (job["status"], job["done"], job["skipped"]) == ("completed", 450, 0)
    assert _count(api, status="cancelled", queue="later") == 450
    assert target.at("/later") == []
    bad = api.post("/v1/runs/bulk", json={"action": "explode"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.action"
    assert api.get("/v1/runs/bulk/nope").status_code == 404
