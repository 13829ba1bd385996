"""Every way a run ends wakes a parent waiting on it in ``step.invoke`` — once; and
durable functions move the same step, outbound and retry metrics as HTTP tasks.

A real engine and an app written with the official Python SDK
(``apps/lifecycle_app.py``): ``lc/parent`` invokes a child that sleeps for an hour,
and each test ends the child another way — the API, the dashboard, a bulk job, a
finish timeout, a start timeout, a ``cancelOn`` event, an invoke timeout, lease
exhaustion after the engine was killed. The parent must resume with the error the
SDK raises from ``step.invoke`` and end, and the child's ``inngest/function.finished``
must be emitted exactly once. Both stores.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import inngest
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import postgres_schema
from tests.support.engine import EngineProcess, free_port
from tests.support.poll import answers, eventually

APP_SCRIPT = Path(__file__).parent / "apps" / "lifecycle_app.py"


@dataclass
class Setup:
    engine: EngineProcess
    app_url: str

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.engine.url}{path}", timeout=60, **kw)

    def send(self, name: str, data: dict[str, Any]) -> str:
        sender = inngest.Inngest(app_id="tester", is_production=False,
                                 event_api_base_url=self.engine.url,
                                 api_base_url=self.engine.url)
        return str(sender.send_sync(inngest.Event(name=name, data=data))[0])

    def run_of(self, event_id: str, timeout: float = 15) -> str:
        runs = eventually(lambda: self.api("GET", f"/v1/events/{event_id}").json()["runs"]
                          or None, timeout=timeout, what=f"a run of event {event_id}")
        return str(runs[0]["id"])

    def until(self, run_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            run = self.api("GET", f"/v1/runs/{run_id}/wait", params={"timeout": 2}).json() \
                if "completed" in statuses else self.api("GET", f"/v1/runs/{run_id}").json()
            return dict(run) if run["status"] in statuses else None

        return eventually(probe, timeout=timeout, what=f"run {run_id} to be {statuses}")

    def parent_and_child(self, fn: str, *, child: dict[str, Any] | None = None,
                         timeout: float | None = None, child_status: str = "sleeping"
                         ) -> tuple[str, str]:
        """Start ``lc/parent`` invoking ``fn``; its id and the child's, once the child is
        in ``child_status``."""
        parent = self.run_of(self.send("lc/parent", {"fn": fn, "child": child or {},
                                                     "timeout": timeout}))
        run = self.until(parent, "waiting")
        child_id = str(run["steps"][0]["input"]["run_id"])
        self.until(child_id, child_status)
        return parent, child_id

    def parent_resumed(self, parent: str, child_id: str, error_name: str) -> dict[str, Any]:
        """The parent's outcome, after checking it ended with what ``step.invoke`` raised
        and that the child announced its end once."""
        run = self.until(parent, "completed", "failed", "cancelled", timeout=40)
        assert run["status"] == "completed", run
        assert run["output"]["error"] == error_name, run["output"]
        [step] = run["steps"]
        assert step["kind"] == "invoke" and step["status"] == "failed", step
        finished = [e for e in self.api("GET", "/v1/events", params={
            "name": "inngest/function.finished", "limit": 500}).json()["data"]
            if e["data"].get("run_id") == child_id]
        assert len(finished) == 1, finished
        return run


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Setup]:
    cleanup = contextlib.ExitStack()
    database_url = cleanup.enter_context(postgres_schema()) \
        if request.param == "postgres" else None
    data_dir = tmp_path_factory.mktemp(f"lifecycle-{request.param}")
    port = free_port()
    engine = EngineProcess(data_dir, database_url=database_url, port=port, env={
        "OFFLOAD_CALL_TIMEOUT_S": "20", "OFFLOAD_MAX_LEASE_EXPIRIES": "1"}).start()
    app_port = free_port()
    app_env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    app_env["INNGEST_DEV"] = engine.url
    log = (data_dir / "app.log").open("ab")
    proc = subprocess.Popen([sys.executable, str(APP_SCRIPT), "--port", str(app_port)],
                            env=app_env, stdout=log, stderr=subprocess.STDOUT)
    s = Setup(engine, f"http://127.0.0.1:{app_port}")
    try:
        eventually(lambda: answers(f"{s.app_url}/counts"), timeout=20, what="the app")
        synced = s.api("POST", "/v1/apps", json={"url": f"{s.app_url}/api/inngest"})
        assert synced.status_code == 200, synced.text
        yield s
    finally:
        proc.kill()
        proc.wait()
        s.engine.kill()
        cleanup.close()


def test_api_cancel__wakes_the_parent(setup: Setup) -> None:
    parent, child = setup.parent_and_child("sleepy")
    cancelled = setup.api("POST", f"/v1/runs/{child}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["error"]["name"] == "FunctionCancelledError"
    setup.parent_resumed(parent, child, "FunctionCancelledError")
    assert setup.api("POST", f"/v1/runs/{child}/cancel").status_code == 409
    names = [e["name"] for e in setup.api("GET", "/v1/events", params={"limit": 500}).json()[
        "data"] if e["data"].get("run_id") == child]
    assert sorted(names) == ["inngest/function.cancelled", "inngest/function.finished"]


def test_dashboard_cancel__wakes_the_parent(setup: Setup) -> None:
    parent, child = setup.parent_and_child("sleepy")
    with httpx.Client(base_url=setup.engine.url, timeout=30) as browser:
        page = browser.get(f"/runs/{child}")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        done = browser.post(f"/runs/{child}/cancel", data={"csrf": csrf.group(1)})
        assert done.status_code in (200, 303), done.text
    assert setup.api("GET", f"/v1/runs/{child}").json()["status"] == "cancelled"
    setup.parent_resumed(parent, child, "FunctionCancelledError")


def test_bulk_cancel__wakes_the_parent(setup: Setup) -> None:
    parent, child = setup.parent_and_child("sleepy")
    job = setup.api("POST", "/v1/runs/bulk", json={"action": "cancel",
                                                   "filter": {"q": child}})
    assert job.status_code == 202, job.text
    setup.parent_resumed(parent, child, "FunctionCancelledError")
    def ended() -> dict[str, Any] | None:
        got = dict(setup.api("GET", f"/v1/runs/bulk/{job.json()['id']}").json())
        return got if got["status"] != "running" else None

    body = eventually(ended, what="the bulk job to end")
    assert body["done"] == 1, body


def test_finish_timeout__wakes_the_parent(setup: Setup) -> None:
    parent, child = setup.parent_and_child("sleepy-finish")
    run = setup.parent_resumed(parent, child, "FinishTimeoutError")
    assert "finish timeout" in run["output"]["message"]


def test_start_timeout__wakes_the_parent(setup: Setup) -> None:
    key = secrets.token_hex(4)
    first = setup.run_of(setup.send("lc/sleepy-start", {"key": key}))
    setup.until(first, "sleeping")  # it took the throttle's one slot for an hour
    parent, child = setup.parent_and_child("sleepy-start", child={"key": key},
                                           child_status="queued")
    setup.parent_resumed(parent, child, "StartTimeoutError")
    assert setup.api("POST", f"/v1/runs/{first}/cancel").status_code == 200


def test_cancel_on_event__wakes_the_parent(setup: Setup) -> None:
    key = secrets.token_hex(4)
    parent, child = setup.parent_and_child("sleepy-cancellable", child={"key": key})
    setup.send("lc/cancel", {"key": key})
    setup.parent_resumed(parent, child, "FunctionCancelledError")


def test_invoke_timeout__wakes_the_parent_and_leaves_the_child(setup: Setup) -> None:
    parent, child = setup.parent_and_child("sleepy", timeout=1)
    run = setup.until(parent, "completed", "failed", timeout=30)
    assert run["status"] == "completed" and run["output"]["error"] == \
        "InngestInvokeTimeoutError", run
    assert setup.api("GET", f"/v1/runs/{child}").json()["status"] == "sleeping"
    assert setup.api("POST", f"/v1/runs/{child}/cancel").status_code == 200


def test_lease_exhaustion__wakes_the_parent(setup: Setup) -> None:
    parent, child = setup.parent_and_child("stuck", child_status="running")
    eventually(lambda: httpx.get(f"{setup.app_url}/counts").json().get(child, 0) >= 1,
               what="the child's step to start")
    setup.engine.kill()  # mid-call: the child's lease is never renewed again
    setup.engine.start()
    run = setup.parent_resumed(parent, child, "lease_exhausted")
    assert "lease expired" in run["output"]["message"]
    assert setup.api("GET", f"/v1/runs/{child}").json()["status"] == "failed"
    httpx.post(f"{setup.app_url}/release")  # the stuck step may return now


def _metrics(setup: Setup) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = setup.api("GET", "/metrics").text
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _sum(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
         **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def test_metrics__steps_outbound_and_retries_move_for_durable_functions(setup: Setup) -> None:
    before = _metrics(setup)
    run_id = setup.run_of(setup.send("lc/flaky-once", {}))
    run = setup.until(run_id, "completed", "failed", "cancelled", timeout=40)
    assert run["status"] == "completed" and run["output"] == "ok", run
    setup.api("POST", f"/v1/runs/{setup.parent_and_child('sleepy')[1]}/cancel")
    after = _metrics(setup)

    def moved(name: str, **labels: str) -> float:
        return _sum(after, name, **labels) - _sum(before, name, **labels)

    assert moved("offload_retries_total", kind="step") >= 1
    assert moved("offload_step_duration_seconds_count", kind="run", status="errored") >= 1
    assert moved("offload_step_duration_seconds_count", kind="run", status="completed") >= 1
    assert moved("offload_outbound_requests_total", kind="app", outcome="success") >= 2
    assert moved("offload_run_ends_total", kind="function", status="completed",
                 reason="attempt") >= 1
    assert moved("offload_run_ends_total", kind="function", status="cancelled",
                 reason="api") == 1
