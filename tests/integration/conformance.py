"""Shared plumbing of the SDK conformance suites: an engine, an app, and API helpers.

Each suite (test_sdk_conformance_python.py, test_sdk_conformance_node.py) starts one
real engine and one real SDK app per set-up (dev mode on SQLite, signed mode on
PostgreSQL), syncs the app, and drives scenarios through ``/e/{key}`` and ``/v1``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import postgres_schema
from tests.support.engine import EngineProcess, free_port
from tests.support.poll import answers, eventually
from tests.support.settled import events_fanned_out

SIGNING_KEY = "signkey-test-" + "cd34" * 16
EVENT_KEY = "conf-event-key-" + "e" * 16
API_KEY = "conf-admin-key-" + "f" * 20
SETUPS = [("dev", "sqlite"), ("signed", "postgres")]
ENDED = ("completed", "failed", "cancelled")


@dataclass
class Stack:
    """An engine and an SDK app wired together."""

    mode: str
    engine: EngineProcess
    app_url: str

    @property
    def signed(self) -> bool:
        return self.mode == "signed"

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {API_KEY}"} if self.signed else {}
        return httpx.request(method, f"{self.engine.url}{path}", headers=headers,
                             timeout=60, **kw)

    def send(self, name: str, data: dict[str, Any] | None = None, **fields: Any) -> str:
        """Send one event the way the SDKs do (``POST /e/{key}``); its id."""
        r = httpx.post(f"{self.engine.url}/e/{EVENT_KEY}",
                       json={"name": name, "data": data or {}, **fields}, timeout=60)
        assert r.status_code == 200, r.text
        return str(r.json()["ids"][0])

    def _event_runs(self, event_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/v1/events/{event_id}").json().get("runs") or [])

    def runs_of_event(self, event_id: str, n: int = 1, timeout: float = 20
                      ) -> list[dict[str, Any]]:
        """The event's runs, once there are ``n``."""
        return eventually(lambda: (runs if len(runs := self._event_runs(event_id)) >= n
                                   else None), timeout=timeout,
                          what=f"{n} runs of event {event_id}",
                          detail=lambda: self._event_runs(event_id))

    def fanned_out(self) -> None:
        """Wait until every event sent so far has done all it will (started runs, …)."""
        events_fanned_out(lambda path: self.api("GET", path))

    def final_runs_of_event(self, event_id: str) -> list[dict[str, Any]]:
        """Every run the event will ever start: read once it has been fanned out."""
        self.fanned_out()
        return self._event_runs(event_id)

    def start(self, name: str, data: dict[str, Any] | None = None) -> str:
        """Send an event that starts exactly one run; the run's id."""
        runs = self.runs_of_event(self.send(name, data))
        assert len(runs) == 1, runs
        return str(runs[0]["id"])

    def finish(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        polled: list[dict[str, Any]] = []

        def ended() -> bool:  # a long poll: the server holds each call up to 10 s
            polled.append(self.api("GET", f"/v1/runs/{run_id}/wait", params={"timeout": 10}).json())
            return polled[-1]["status"] in ENDED

        eventually(ended, timeout=timeout, interval=0, what=f"run {run_id} to end",
                   detail=lambda: f"{polled[-1]}\n{self.engine.logs()}")
        full: dict[str, Any] = self.api("GET", f"/v1/runs/{run_id}").json()
        return full

    def run(self, name: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.finish(self.start(name, data))

    def runs_of(self, function_id: str) -> list[dict[str, Any]]:
        r = self.api("GET", "/v1/runs", params={"function_id": function_id})
        assert r.status_code == 200, r.text
        data: list[dict[str, Any]] = r.json()["data"]
        return data

    def ended_run_of(self, function_id: str, timeout: float = 30) -> dict[str, Any]:
        ended = eventually(
            lambda: next((r for r in self.runs_of(function_id) if r["status"] in ENDED), None),
            timeout=timeout, interval=0.1, what=f"an ended run of {function_id}",
            detail=lambda: self.runs_of(function_id))
        return self.finish(ended["id"])


def wait_http(url: str, timeout: float = 30) -> None:
    eventually(lambda: answers(url), timeout=timeout, what=f"{url} to come up")


@contextlib.contextmanager
def stack(mode: str, store: str, data_dir: Path, app_cmd: list[str], app_cwd: Path | None,
          app_probe: str) -> Iterator[Stack]:
    """An engine (``mode``, ``store``) and the app ``app_cmd`` (told its port by ``PORT``
    and ``--port``), synced; both killed afterwards."""
    with contextlib.ExitStack() as cleanup:
        database_url = cleanup.enter_context(postgres_schema()) if store == "postgres" \
            else None
        port = free_port()
        env: dict[str, str] = {"OFFLOAD_CALL_TIMEOUT_S": "30"}
        kwargs: dict[str, Any] = {"database_url": database_url, "port": port}
        app_env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
        if mode == "signed":
            env.update(OFFLOAD_SIGNING_KEY=SIGNING_KEY, OFFLOAD_EVENT_KEYS=EVENT_KEY,
                       OFFLOAD_API_KEYS=API_KEY, OFFLOAD_OUTBOUND_ALLOW="127.0.0.1/32")
            kwargs["mode"] = "serve"
            app_env.update(INNGEST_SIGNING_KEY=SIGNING_KEY, INNGEST_EVENT_KEY=EVENT_KEY,
                           INNGEST_BASE_URL=f"http://127.0.0.1:{port}", INNGEST_DEV="0")
        else:
            app_env["INNGEST_DEV"] = f"http://127.0.0.1:{port}"
        engine = EngineProcess(data_dir, env=env, **kwargs).start()
        cleanup.callback(engine.kill)
        app_port = free_port()
        app_env["PORT"] = str(app_port)
        log = (data_dir / "app.log").open("ab")
        proc = subprocess.Popen([*app_cmd, "--port", str(app_port)], cwd=app_cwd, env=app_env,
                                stdout=log, stderr=subprocess.STDOUT)

        def _stop() -> None:
            proc.kill()
            proc.wait()
        cleanup.callback(_stop)
        base = f"http://127.0.0.1:{app_port}"
        wait_http(base + app_probe)
        s = Stack(mode, engine, base)
        synced = s.api("POST", "/v1/apps", json={"url": f"{base}/api/inngest"})
        assert synced.status_code in (200, 201), synced.text
        yield s


def end_invoked_child(s: Stack, prefix: str, how: str, key: str) -> dict[str, Any]:
    """Start ``invoke-ended`` (a parent invoking a child that sleeps an hour), end the child
    ``how`` (``api``, ``bulk``, ``cancel_on`` or ``timeout``), and return the parent run
    once it has ended: the parent must be woken, once, whatever ended its child."""
    parent = s.start("conf/invoke-ended", {"k": key, "overdue": how == "timeout"})
    child_fn = prefix + ("overdue-child" if how == "timeout" else "long-child")

    def sleeping_child() -> dict[str, Any] | None:
        mine = [run for run in s.runs_of(child_fn)
                if (run.get("correlation_id") or "").startswith(parent + ".")
                and run["status"] == "sleeping"]
        return mine[-1] if mine else None

    child = eventually(sleeping_child, timeout=30,
                       what=f"the {child_fn} run invoked by {parent} to be sleeping",
                       detail=lambda: s.runs_of(child_fn))
    if how == "api":
        r = s.api("POST", f"/v1/runs/{child['id']}/cancel")
        assert r.status_code == 200, r.text
    elif how == "bulk":
        r = s.api("POST", "/v1/runs/bulk", json={
            "action": "cancel", "filter": {"function_id": child_fn, "status": ["sleeping"]}})
        assert r.status_code == 202, r.text
    elif how == "cancel_on":
        s.send("conf/cancel-child", {"k": key})
    ended = s.finish(parent)
    assert s.finish(child["id"])["status"] in ("cancelled", "failed")
    return ended


def seen(s: Stack, run_id: str, what: str) -> list[Any]:
    """What the app's functions recorded under ``<run_id>/<what>`` (``GET /seen``)."""
    body: dict[str, list[Any]] = httpx.get(f"{s.app_url}/seen").json()
    return body.get(f"{run_id}/{what}", [])


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    """The step of ``run`` with this name."""
    found: dict[str, Any] = next(x for x in run["steps"] if x["name"] == name)
    return found


def used_api(s: Stack, run_id: str) -> bool:
    """Whether the engine sent a call of ``run_id`` with ``use_api`` (its log says so)."""
    return any("use_api" in line and run_id in line
               for line in s.engine.log_path.read_text(errors="replace").splitlines())
