"""The examples in examples/ run against `offload dev` with only environment variables set.

The Next.js example runs under the real `next dev`; the FastAPI example under uvicorn.
Each is synced through POST /v1/apps, given work through its own endpoint, and the
multi-step run is checked through /v1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.engine import EngineProcess, free_port
from tests.support.poll import eventually

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=5)
        except httpx.HTTPError:
            return False
        return True

    eventually(up, timeout=timeout, interval=0.2, what=f"{url} to answer",
               detail=lambda: log.read_text()[-3000:])


def _start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    # A session of its own: `next dev` forks a server that must die with it (killpg).
    return subprocess.Popen(cmd, cwd=cwd, env={**base, **env}, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    with EngineProcess(tmp_path / "engine") as e:
        yield e


def _finished(engine: EngineProcess, function_id: str, timeout: float = 40) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        runs = httpx.get(f"{engine.url}/v1/runs", params={"function_id": function_id}).json()
        for run in runs["data"]:
            if run["status"] in ("completed", "failed"):
                result: dict[str, Any] = httpx.get(f"{engine.url}/v1/runs/{run['id']}").json()
                return result
        return None

    return eventually(probe, timeout=timeout, interval=0.2,
                      what=f"a finished run of {function_id}")


def test_nextjs_example(engine: EngineProcess, tmp_path: Path) -> None:
    app_dir = EXAMPLES / "nextjs"
    client = ROOT / "clients" / "typescript" / "dist" / "esm" / "index.js"
    if shutil.which("node") is None or not (app_dir / "node_modules" / "next").exists() \
            or not client.exists():
        message = ("Next.js example needs node, `npm ci` in examples/nextjs and the built "
                   "clients/typescript (scripts/services)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(f"SKIPPING — {message}")
    port = free_port()
    log = tmp_path / "next.log"
    secret = (engine.data_dir / "webhook_secret").read_text().strip()  # dev made it
    proc = _start([str(app_dir / "node_modules" / ".bin" / "next"), "dev", "-p", str(port),
                   "-H", "127.0.0.1"], app_dir,
                  {"INNGEST_DEV": engine.url, "NEXT_TELEMETRY_DISABLED": "1",
                   "OFFLOAD_URL": engine.url, "OFFLOAD_WEBHOOK_SECRET": secret}, log)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/inngest", proc, log)
        r = httpx.post(f"{engine.url}/v1/apps",
                       json={"url": f"http://127.0.0.1:{port}/api/inngest"}, timeout=60)
        assert r.status_code in (200, 201), r.text
        r = httpx.post(f"http://127.0.0.1:{port}/api/orders", timeout=60,
                       json={"orderId": "A1", "items": [{"price": 5, "qty": 2},
                                                        {"price": 1, "qty": 3}]})
        assert r.status_code == 202, r.text
        run = _finished(engine, "shop-fulfil-order")
        assert run["status"] == "completed", run
        assert run["output"] == {"orderId": "A1", "charge": {"id": "ch_A1", "total": 13},
                                 "shipment": {"tracking": "TRK-A1"}}
        assert [s["kind"] for s in run["steps"]] == ["run", "run", "sleep", "run"]
        _nextjs_task_with_callback(engine, f"http://127.0.0.1:{port}")
    finally:
        _stop(proc)


def _nextjs_task_with_callback(engine: EngineProcess, app: str) -> None:
    """@offload/client in the example: a route creates an HTTP task with a callback; offload
    calls the target route and posts the signed outcome to the callback route, which
    verifies it (verifyWebhook) and records it."""
    r = httpx.post(f"{app}/api/reports", json={"month": "2030-01"}, timeout=60)
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]

    def done() -> httpx.Response | None:
        got = httpx.get(f"{app}/api/reports/done", params={"run_id": run_id}, timeout=60)
        return got if got.status_code == 200 else None

    got = eventually(done, timeout=60, interval=0.2, what=f"the callback of report run {run_id}")
    assert got.json() == {"delivery": f"msg_{run_id}_callback", "status": "completed",
                          "report": {"month": "2030-01", "rows": 3, "total": 4200}}
    run = httpx.get(f"{engine.url}/v1/runs/{run_id}").json()
    assert run["status"] == "completed", run
    assert {s["kind"]: s["status"] for s in run["steps"]}.get("callback") == "completed", run
    # The same month again: the idempotency key answers the first run.
    again = httpx.post(f"{app}/api/reports", json={"month": "2030-01"}, timeout=60).json()
    assert again == {"run_id": run_id, "duplicate": True}
    # A forged callback (no or a wrong signature) is refused by the route.
    body = {"run_id": "01FORGED", "status": "completed", "response": None}
    forged = httpx.post(f"{app}/api/reports/done", json=body, headers={
        "webhook-id": "msg_x", "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1,AAAA"}, timeout=60)
    assert forged.status_code == 401, forged.text
    assert httpx.post(f"{app}/api/reports/done", json=body, timeout=60).status_code == 401


def test_fastapi_example(engine: EngineProcess, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "fastapi.log"
    proc = _start([sys.executable, "-m", "uvicorn", "main:app", "--port", str(port),
                   "--host", "127.0.0.1"], EXAMPLES / "fastapi", {"INNGEST_DEV": engine.url},
                  log)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/inngest", proc, log)
        r = httpx.post(f"{engine.url}/v1/apps",
                       json={"url": f"http://127.0.0.1:{port}/api/inngest"}, timeout=30)
        assert r.status_code in (200, 201), r.text
        r = httpx.post(f"http://127.0.0.1:{port}/signup", json={"email": "ada@example.com"})
        assert r.status_code == 202, r.text
        run = _finished(engine, "signup-onboard-user")
        assert run["status"] == "completed", run
        assert run["output"] == {"account": {"account_id": "acct_ada"},
                                 "mail": "welcome mail queued for ada@example.com"}
    finally:
        _stop(proc)
