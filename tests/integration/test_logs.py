"""Structured logs: one JSON line per run state change, with ids and attempt; no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.target import Target

SECRET = "s3cr3t-token-value"


def _lines(engine: EngineProcess) -> list[dict[str, object]]:
    out = []
    for raw in engine.log_path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            out.append(json.loads(raw))
    return out


def test_state_changes_are_logged_as_json_without_secrets(tmp_path: Path) -> None:
    target = Target().start()
    target.script("/flaky", (503, {}, b"", 0.0), (200, {}, b"ok", 0.0))
    try:
        with EngineProcess(tmp_path / "e") as engine:
            api = httpx.Client(base_url=engine.url, timeout=30)
            run_id = api.post("/v1/tasks", json={
                "url": f"{target.url}/flaky?token={SECRET}", "body": {"password": SECRET},
                "headers": {"Authorization": f"Bearer {SECRET}"}}).json()["id"]
            later = api.post("/v1/tasks", json={"url": f"{target.url}/x", "delay": 600})
            assert api.get(f"/v1/runs/{run_id}/wait", params={"timeout": 20}).json()[
                "status"] == "completed"
            api.post(f"/v1/runs/{later.json()['id']}/cancel")

            def cancel_logged() -> list[dict[str, object]] | None:
                got = _lines(engine)
                return got if any(line.get("run_id") == later.json()["id"]
                                  for line in got) else None

            lines = eventually(cancel_logged, what="the cancellation in the log")
            text = engine.log_path.read_text()
    finally:
        target.stop()
    mine = [line for line in lines if line.get("run_id") == run_id]
    assert [(line["status"], line["attempt"]) for line in mine] == [
        ("queued", 1), ("completed", 2)], mine
    assert all(line["logger"] == "offload.runs" and line["function_id"] == "http"
               and line["level"] == "info" and "ts" in line for line in mine)
    assert mine[0]["error"] == "HTTPStatusError"
    cancelled = [line for line in lines if line.get("run_id") == later.json()["id"]]
    assert [(line["status"], line["by"]) for line in cancelled] == [("cancelled", "api")]
    assert SECRET not in text
