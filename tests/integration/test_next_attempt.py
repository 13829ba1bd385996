"""``next_attempt_at``: when a waiting run (and a step waiting to retry) will be tried again.

Before, a task answered ``429 Retry-After: 999999`` was rescheduled a day ahead (the
cap) but neither the API nor the dashboard said when.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.target import Target


def _at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


def test_next_attempt_of_a_throttled_task_is_shown(store_url: str, tmp_path: Path) -> None:
    target = Target().start()
    target.script("/busy", (429, {"Retry-After": "999999"}, b"slow down", 0.0))
    engine = EngineProcess(tmp_path / "data", database_url=store_url).start()
    try:
        with httpx.Client(base_url=engine.url, timeout=30) as client:
            run_id = client.post("/v1/tasks", json={"url": f"{target.url}/busy"}).json()["id"]
            delayed = client.post("/v1/tasks", json={"url": f"{target.url}/later",
                                                     "delay": 3600}).json()["id"]

            def retry_planned() -> dict[str, Any] | None:
                run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
                return run if run["attempt"] >= 1 and run["next_attempt_at"] else None

            run = eventually(retry_planned, timeout=20, interval=0.1,
                             what=f"run {run_id} to plan its next attempt")
            started = _at(run["created_at"])
            wait = _at(run["next_attempt_at"]) - started
            assert timedelta(hours=23) < wait < timedelta(hours=25), run  # capped at a day
            waiting = [s for s in run["steps"] if s["status"] == "errored"]
            assert waiting, run["steps"]
            assert all(s["next_attempt_at"] == run["next_attempt_at"] for s in waiting)
            listed = {r["id"]: r for r in client.get("/v1/runs").json()["data"]}
            assert listed[run_id]["next_attempt_at"] == run["next_attempt_at"]
            later = listed[delayed]
            assert timedelta(minutes=59) < _at(later["next_attempt_at"]) - \
                _at(later["created_at"]) < timedelta(minutes=61)
            page = client.get(f"/runs/{run_id}").text
            assert 'id="next-attempt"' in page
            cancelled = client.post(f"/v1/runs/{run_id}/cancel").json()
            assert cancelled["next_attempt_at"] is None
            assert client.get(f"/v1/runs/{run_id}").json()["next_attempt_at"] is None
    finally:
        engine.kill()
        target.stop()
