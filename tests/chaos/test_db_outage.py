"""A database outage is not a crash: ingest answers 503 with Retry-After (never 202 or 500),
/readyz fails, and the engine recovers by itself when the database returns."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.proxy import ChaosProxy
from tests.support.target import Target


def test_postgres_outage_answers_503_then_recovers(postgres_url: str, tmp_path: Path,
                                                   target: Target) -> None:
    parts = urlsplit(postgres_url)
    proxy = ChaosProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    engine = EngineProcess(tmp_path / "engine", database_url=proxied).start()
    try:
        api = httpx.Client(base_url=engine.url, timeout=30)
        task = {"url": f"{target.url}/ok", "body": {"n": 1}}
        before = api.post("/v1/tasks", json=task)
        assert before.status_code == 202, before.text

        proxy.cut()
        answers = [api.post("/v1/tasks", json={**task, "body": {"n": i}}) for i in range(5)]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"]
            assert answer.json()["code"] == "store_unavailable"
        ready = api.get("/readyz")
        assert ready.status_code == 503

        proxy.restore()
        eventually(lambda: api.get("/readyz").status_code == 200, timeout=30, interval=0.2,
                   what="the engine to recover (/readyz 200)")
        after = api.post("/v1/tasks", json={**task, "body": {"n": 99}})
        assert after.status_code == 202, after.text
        done = api.get(f"/v1/runs/{after.json()['id']}/wait", params={"timeout": 20}).json()
        assert done["status"] == "completed"
        first = api.get(f"/v1/runs/{before.json()['id']}/wait", params={"timeout": 20}).json()
        assert first["status"] == "completed"
        # nothing that was refused was written
        bodies = [r.body for r in target.at("/ok")]
        assert all(b"\"n\":1}" in b or b"99" in b for b in bodies), bodies
    finally:
        engine.kill()
        proxy.stop()
