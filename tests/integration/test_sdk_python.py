"""Apps written with the official ``inngest`` Python SDK run durably on offload.

A real ``offload`` process and a real app (FastAPI on uvicorn, or Flask on
werkzeug) in subprocesses on loopback, synced by ``POST /v1/apps``; events are
sent with the SDK's own client; every assertion goes through ``/v1``. The
scenarios run on four set-ups: dev mode and production mode (signed calls,
Bearer-checked sync, event keys, API keys), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import inngest
import pytest

from tests.conftest import postgres_schema
from tests.support.engine import EngineProcess, free_port
from tests.support.poll import answers, eventually
from tests.support.settled import events_fanned_out

APP_SCRIPT = Path(__file__).parent / "apps" / "py_app.py"
SIGNING_KEY = "signkey-test-" + "ab12" * 16
EVENT_KEY = "evt-key-" + "c" * 20
API_KEY = "admin-key-" + "d" * 24
SETUPS = [("dev", "sqlite", "fastapi"), ("prod", "postgres", "flask"),
          ("dev", "postgres", "flask"), ("prod", "sqlite", "fastapi")]


@dataclass
class Setup:
    """An engine and an SDK app wired together, plus helpers to drive them."""

    mode: str
    engine: EngineProcess
    app_port: int
    app_proc: subprocess.Popen[bytes]
    engine_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def prod(self) -> bool:
        return self.mode == "prod"

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {API_KEY}"} if self.prod else {}
        return httpx.request(method, f"{self.engine.url}{path}", headers=headers,
                             timeout=60, **kw)

    def sender(self) -> inngest.Inngest:
        if self.prod:
            return inngest.Inngest(app_id="tester", is_production=True,
                                   event_key=EVENT_KEY, signing_key=SIGNING_KEY,
                                   event_api_base_url=self.engine.url,
                                   api_base_url=self.engine.url)
        return inngest.Inngest(app_id="tester", is_production=False,
                               event_api_base_url=self.engine.url,
                               api_base_url=self.engine.url)

    def send(self, name: str, data: dict[str, Any] | None = None, **kw: Any) -> str:
        ids = self.sender().send_sync(inngest.Event(name=name, data=data or {}, **kw))
        assert len(ids) == 1
        return ids[0]

    def _event_runs(self, event_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/v1/events/{event_id}").json()["runs"])

    def runs_of(self, event_id: str, n: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
        """The event's runs, once there are ``n``."""
        return eventually(lambda: (runs if len(runs := self._event_runs(event_id)) >= n
                                   else None), timeout=timeout,
                          what=f"{n} runs of event {event_id}",
                          detail=lambda: self._event_runs(event_id))

    def final_runs_of(self, event_id: str) -> list[dict[str, Any]]:
        """Every run the event will ever start: read once it has been fanned out."""
        events_fanned_out(lambda path: self.api("GET", path))
        return self._event_runs(event_id)

    def start(self, name: str, data: dict[str, Any] | None = None) -> str:
        runs = self.runs_of(self.send(name, data))
        assert len(runs) == 1, runs
        return str(runs[0]["id"])

    def finish(self, run_id: str, timeout: float = 40) -> dict[str, Any]:
        polled: list[dict[str, Any]] = []

        def finished() -> dict[str, Any] | None:  # a long poll: each call waits up to 10 s
            polled.append(self.api("GET", f"/v1/runs/{run_id}/wait", params={"timeout": 10}).json())
            ended = polled[-1]["status"] in ("completed", "failed", "cancelled")
            return dict(polled[-1]) if ended else None

        return eventually(finished, timeout=timeout, interval=0, what=f"run {run_id} to finish",
                          detail=lambda: f"{polled[-1]}\n{self.engine.logs()}")

    def run(self, name: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.finish(self.start(name, data))

    def until_status(self, run_id: str, status: str, timeout: float = 15) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            run = self.api("GET", f"/v1/runs/{run_id}").json()
            return dict(run) if run["status"] == status else None

        return eventually(probe, timeout=timeout, what=f"run {run_id} to be {status}")

    def counts(self, run_id: str) -> dict[str, int]:
        body = httpx.get(f"{self.app_url}/counts").json()
        return {k.split("/", 1)[1]: v for k, v in body.items() if k.startswith(run_id + "/")}

    def restart_engine(self) -> None:
        self.engine.kill()
        self.engine = EngineProcess(**self.engine_kwargs).start()


def _wait_http(url: str, timeout: float = 20) -> None:
    eventually(lambda: answers(url), timeout=timeout, what=f"{url} to come up")


@pytest.fixture(scope="module", params=SETUPS, ids=["-".join(s) for s in SETUPS])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Setup]:
    mode, store, framework = request.param
    cleanup = contextlib.ExitStack()
    database_url = cleanup.enter_context(postgres_schema()) if store == "postgres" else None
    data_dir = tmp_path_factory.mktemp(f"engine-{mode}-{store}")
    env: dict[str, str] = {"OFFLOAD_CALL_TIMEOUT_S": "20"}
    kwargs: dict[str, Any] = {"data_dir": data_dir, "database_url": database_url,
                              "port": free_port()}
    app_env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    if mode == "prod":
        env.update(OFFLOAD_SIGNING_KEY=SIGNING_KEY, OFFLOAD_EVENT_KEYS=EVENT_KEY,
                   OFFLOAD_API_KEYS=API_KEY, OFFLOAD_OUTBOUND_ALLOW="127.0.0.1/32")
        kwargs["mode"] = "serve"
        app_env.update(INNGEST_SIGNING_KEY=SIGNING_KEY, INNGEST_EVENT_KEY=EVENT_KEY,
                       INNGEST_BASE_URL=f"http://127.0.0.1:{kwargs['port']}")
    else:
        app_env["INNGEST_DEV"] = f"http://127.0.0.1:{kwargs['port']}"
    kwargs["env"] = env
    engine = EngineProcess(**kwargs).start()
    app_port = free_port()
    log = (data_dir / "app.log").open("ab")
    proc = subprocess.Popen([sys.executable, str(APP_SCRIPT), "--framework", framework,
                             "--port", str(app_port)], env=app_env, stdout=log,
                            stderr=subprocess.STDOUT)
    s = Setup(mode, engine, app_port, proc, kwargs)
    try:
        _wait_http(f"{s.app_url}/counts")
        synced = s.api("POST", "/v1/apps", json={"url": f"{s.app_url}/api/inngest"})
        assert synced.status_code == 200, synced.text
        yield s
    finally:
        proc.kill()
        proc.wait()
        s.engine.kill()
        cleanup.close()


# -- sync ------------------------------------------------------------------------------------


def test_sync__registers_every_function(setup: Setup) -> None:
    apps = setup.api("GET", "/v1/apps").json()["data"]
    app = next(a for a in apps if a["id"] == "pyapp")
    ids = {f["id"] for f in app["functions"]}
    assert {"pyapp-two-steps", "pyapp-doomed", "pyapp-doomed-failure", "pyapp-cronny"} <= ids
    assert app["sdk"].startswith("py:") and app["sync_error"] is None
    again = setup.api("POST", "/v1/apps/pyapp/sync")
    assert again.status_code == 200, again.text
    functions = {f["id"]: f for f in setup.api("GET", "/v1/functions").json()["data"]}
    cron = functions["pyapp-cronny"]
    assert cron["crons"][0]["cron"] == "* * * * *"
    next_fire = datetime.fromisoformat(cron["next_fire_at"])
    assert timedelta(0) < next_fire - datetime.now(UTC) <= timedelta(seconds=61)


def test_sync__refusals_are_clear(setup: Setup) -> None:
    kind = "dev" if setup.prod else "cloud"
    wrong = httpx.post(f"{setup.engine.url}/fn/register", json={"appname": "x"},
                       headers={"X-Inngest-Expected-Server-Kind": kind})
    assert wrong.status_code == 400 and "server" in wrong.json()["error"]
    unreachable = setup.api("POST", "/v1/apps", json={"url": f"http://127.0.0.1:{free_port()}/"})
    assert unreachable.status_code == 502
    assert unreachable.json()["errors"][0]["code"] == "app_unreachable"
    bad = httpx.post(f"{setup.engine.url}/e/{EVENT_KEY}", json={"data": {}})
    assert bad.status_code == 400 and bad.json()["ids"] == [] and bad.json()["status"] == 400
    if setup.prod:
        unsigned = httpx.post(f"{setup.engine.url}/fn/register",
                              json={"appname": "x", "url": "http://127.0.0.1:1/"})
        assert unsigned.status_code == 401
        no_key = httpx.post(f"{setup.engine.url}/e/wrong-key", json={"name": "t/two"})
        assert no_key.status_code == 401


# -- steps -----------------------------------------------------------------------------------


def test_two_sequential_steps(setup: Setup) -> None:
    run_id = setup.start("t/two", {"value": 5})
    run = setup.finish(run_id)
    assert run["status"] == "completed", run
    assert run["output"] == {"a": "A", "b": {"got": 5}}
    assert [(s["name"], s["status"], s["output"]) for s in run["steps"]] == [
        ("a", "completed", "A"), ("b", "completed", {"got": 5})]
    assert setup.counts(run_id) == {"a": 1, "b": 1}


def test_step_outputs_of_every_json_shape(setup: Setup) -> None:
    sys.path.insert(0, str(APP_SCRIPT.parent))
    from py_app import SHAPES  # type: ignore[import-not-found]

    run = setup.run("t/shapes")
    assert run["status"] == "completed", run
    assert run["output"] == SHAPES
    assert {s["name"]: s["output"] for s in run["steps"]} == {
        f"shape-{k}": v for k, v in SHAPES.items()}


def test_duplicate_step_ids_are_distinct_steps(setup: Setup) -> None:
    run_id = setup.start("t/dupes")
    run = setup.finish(run_id)
    assert run["output"] == [0, 1, 2]
    assert len({s["id"] for s in run["steps"]}) == 3
    assert setup.counts(run_id) == {"same0": 1, "same1": 1, "same2": 1}


def test_function_without_steps(setup: Setup) -> None:
    run = setup.run("t/nosteps", {"n": 3})
    assert run["status"] == "completed" and run["output"] == {"ok": True, "n": 3}
    assert run["steps"] == []


def test_multiple_triggers(setup: Setup) -> None:
    outputs = {setup.run(name)["output"] for name in ("t/multi.a", "t/multi.b")}
    assert outputs == {"t/multi.a", "t/multi.b"}


def test_event_payload_round_trip_and_trigger_expression(setup: Setup) -> None:
    data = {"text": "héllo ✓", "nested": {"list": [1, 2.5, None, True]}, "skip": False}
    external = f"ext-{secrets.token_hex(4)}"
    event_id = setup.send("t/echo", data, id=external, ts=1_700_000_000_000)
    run = setup.finish(setup.runs_of(event_id)[0]["id"])
    assert run["output"] == {"id": event_id, "name": "t/echo", "data": data,
                             "ts": 1_700_000_000_000, "events": 1}
    again = setup.send("t/echo", data, id=external)
    assert again == event_id  # a repeated id is the same event, and starts nothing new
    assert len(setup.final_runs_of(event_id)) == 1
    skipped = setup.send("t/echo", {"skip": True})
    assert setup.final_runs_of(skipped) == []


# -- sleep and waits ------------------------------------------------------------------------


def test_sleep(setup: Setup) -> None:
    run_id = setup.start("t/sleep", {"s": 1})
    sleeping = setup.until_status(run_id, "sleeping")
    assert sleeping["steps"][-1]["kind"] == "sleep"
    started = time.monotonic()
    run = setup.finish(run_id)
    assert run["status"] == "completed" and run["output"] == "rested"
    assert time.monotonic() - started > 0.3
    assert [s["kind"] for s in run["steps"]] == ["run", "sleep", "run"]
    assert setup.counts(run_id) == {"before": 1, "after": 1}


def test_wait_for_event__matched_only_by_expression(setup: Setup) -> None:
    key = secrets.token_hex(4)
    run_id = setup.start("t/wait", {"id": key, "timeout": 30})
    setup.until_status(run_id, "waiting")
    setup.send("t/wait.fulfil", {"id": "someone-else"})
    events_fanned_out(lambda path: setup.api("GET", path))  # it has met the wait
    assert setup.api("GET", f"/v1/runs/{run_id}").json()["status"] == "waiting"
    setup.send("t/wait.fulfil", {"id": key, "extra": [1]})
    run = setup.finish(run_id, timeout=15)
    assert run["output"] == {"matched": {"id": key, "extra": [1]}}
    step = run["steps"][0]
    assert step["kind"] == "wait_for_event" and step["output"]["data"]["id"] == key


def test_wait_for_event__times_out(setup: Setup) -> None:
    run_id = setup.start("t/wait", {"id": secrets.token_hex(4), "timeout": 2})
    setup.until_status(run_id, "waiting")
    setup.send("t/wait.fulfil", {"id": "not-a-match"})
    run = setup.finish(run_id, timeout=20)
    assert run["status"] == "completed" and run["output"] == {"matched": None}


# -- invoke -----------------------------------------------------------------------------------


def test_invoke(setup: Setup) -> None:
    run = setup.run("t/invoke", {"n": 7})
    assert run["status"] == "completed", run
    assert run["output"] == {"result": {"n2": 14}}
    step = run["steps"][0]
    assert step["kind"] == "invoke" and step["output"] == {"n2": 14}
    child = setup.api("GET", f"/v1/runs/{step['input']['run_id']}").json()
    assert child["function_id"] == "pyapp-child" and child["status"] == "completed"


def test_invoke__failing_child(setup: Setup) -> None:
    run = setup.run("t/invoke", {"fail": True})
    assert run["status"] == "completed", run
    assert run["output"]["message"] == "child gave up"


def test_invoke__timeout(setup: Setup) -> None:
    run = setup.run("t/invoke", {"slow": True, "timeout": 1})
    assert run["status"] == "completed", run
    assert run["output"]["error"] == "InngestInvokeTimeoutError"


# -- parallel -------------------------------------------------------------------------------


def test_parallel_steps_then_a_sequential_step(setup: Setup) -> None:
    run_id = setup.start("t/parallel")
    run = setup.finish(run_id)
    assert run["status"] == "completed", run
    assert run["output"] == {"group": ["P1", "P2", "P3"], "tail": "tail"}
    assert sorted(s["name"] for s in run["steps"]) == ["after", "p1", "p2", "p3"]
    assert setup.counts(run_id) == {"p1": 1, "p2": 1, "p3": 1, "after": 1}


# -- errors and retries ---------------------------------------------------------------------


def test_step_fails_then_succeeds(setup: Setup) -> None:
    run_id = setup.start("t/flaky")
    run = setup.finish(run_id)
    assert run["status"] == "completed" and run["output"] == "ok"
    assert run["steps"][0]["attempts"] == 2
    assert setup.counts(run_id) == {"maybe": 2}


def test_step_exhausts_its_retries(setup: Setup) -> None:
    run_id = setup.start("t/exhaust")
    run = setup.finish(run_id)
    assert run["status"] == "completed", run
    assert run["output"] == {"caught": "always broken"}
    assert run["steps"][0]["status"] == "failed"
    assert setup.counts(run_id) == {"always": 2}


def test_non_retriable_error_runs_on_failure(setup: Setup) -> None:
    run_id = setup.start("t/doomed")
    run = setup.finish(run_id)
    assert run["status"] == "failed"
    assert run["error"]["message"] == "no way"
    assert setup.counts(run_id) == {"try": 1}
    def mine_of() -> list[dict[str, Any]]:
        failures = httpx.get(f"{setup.app_url}/failures").json()
        return [f for f in failures if f.get("run_id") == run_id]

    mine = eventually(mine_of, timeout=15, interval=0.1,
                      what=f"the on_failure handler to record run {run_id}")
    assert mine[0]["function_id"] == "pyapp-doomed"
    assert mine[0]["error"]["message"] == "no way"


def test_retry_after_error(setup: Setup) -> None:
    run_id = setup.start("t/later")
    started = time.monotonic()
    run = setup.finish(run_id)
    assert run["status"] == "completed" and run["output"] == "now"
    assert time.monotonic() - started >= 0.5
    assert setup.counts(run_id) == {"call": 2}


def test_cancel_on_event(setup: Setup) -> None:
    key = secrets.token_hex(4)
    other = setup.start("t/cancellable", {"id": "other-" + key})
    run_id = setup.start("t/cancellable", {"id": key})
    setup.until_status(run_id, "sleeping")
    setup.send("t/cancel", {"id": key})
    run = setup.finish(run_id, timeout=15)
    assert run["status"] == "cancelled"
    assert setup.api("GET", f"/v1/runs/{other}").json()["status"] == "sleeping"
    assert setup.api("POST", f"/v1/runs/{other}/cancel").status_code == 200


def test_v1_events_send_list_and_get(setup: Setup) -> None:
    sent = setup.api("POST", "/v1/events", json={"name": "t/nosteps", "data": {"n": 9}})
    assert sent.status_code == 202, sent.text
    event_id = sent.json()["ids"][0]
    run = setup.finish(setup.runs_of(event_id)[0]["id"])
    assert run["output"] == {"ok": True, "n": 9}
    listed = setup.api("GET", "/v1/events", params={"name": "t/nosteps", "limit": 1}).json()
    assert listed["data"][0]["id"] == event_id
    bad = setup.api("POST", "/v1/events", json={"data": {}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.name"


def test_replay_runs_again(setup: Setup) -> None:
    first = setup.run("t/two", {"value": "r"})
    replay = setup.api("POST", f"/v1/runs/{first['id']}/replay").json()
    run = setup.finish(replay["id"])
    assert run["status"] == "completed" and run["output"] == first["output"]


# -- crash safety ---------------------------------------------------------------------------


def test_sigkill_between_steps_records_nothing_twice(setup: Setup) -> None:
    run_id = setup.start("t/killable")
    setup.until_status(run_id, "sleeping")
    setup.restart_engine()
    run = setup.finish(run_id, timeout=60)
    assert run["status"] == "completed" and run["output"] == "survived"
    assert setup.counts(run_id) == {"one": 1, "two": 1, "three": 1}
    names = [s["name"] for s in run["steps"]]
    assert names == ["one", "pause", "two", "pause2", "three"]


# -- cron -----------------------------------------------------------------------------------


async def test_cron_tick__one_run_per_tick_and_latest_missed_only(store_url: str) -> None:
    """The cron service on a real store, with time passed in instead of waited for."""
    from offload.engine.cron_service import CronService
    from offload.models import App, Function
    from offload.protocol.function_config import load_function_config
    from offload.store import open_store
    from offload.store.base import RunFilter

    store = open_store(store_url)
    await store.open()
    try:
        t0 = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
        app = App(id="cronapp", url="http://127.0.0.1:1/api/inngest", sdk="py:v0.5.19",
                  framework=None, app_version=None, checksum="x", sync_error=None,
                  synced_at=t0, created_at=t0, updated_at=t0)
        config = {"id": "cronapp-tick", "name": "tick",
                  "triggers": [{"cron": "* * * * *"}],
                  "steps": {"step": {"id": "step", "name": "step", "runtime": {
                      "type": "http", "url": "http://127.0.0.1:1/api/inngest?fnId=x"}}}}
        fn = Function(id="cronapp-tick", app_id="cronapp", name="tick", config=config,
                      spec=load_function_config(config), created_at=t0, updated_at=t0)
        await store.app_sync(app=app, functions=[fn])
        engines = [CronService(store, catchup=1), CronService(store, catchup=1)]

        assert await engines[0].tick(t0 + timedelta(seconds=20)) == 0  # 12:00:50
        fired = [await e.tick(t0 + timedelta(seconds=31)) for e in engines]  # 12:01:01
        assert fired == [1, 0]  # two engines, one run
        runs = (await store.run_list(filter=RunFilter(function_id="cronapp-tick"),
                                     cursor=None, limit=50)).data
        assert len(runs) == 1
        event = await store.event_get(event_id=runs[0].event_ids[0])
        assert event is not None and event.name == "inngest/scheduled.timer"
        assert event.data["fireAt"] == "2030-01-01T12:01:00.000Z"
        # Down for an hour: of the 59 missed ticks only the latest one fires, plus the
        # tick that is on time now.
        later = t0 + timedelta(hours=1, seconds=31)  # 13:01:01
        assert await engines[1].tick(later) == 2
        assert await engines[0].tick(later) == 0
        runs = (await store.run_list(filter=RunFilter(function_id="cronapp-tick"),
                                     cursor=None, limit=50)).data
        assert len(runs) == 3
        assert await store.cron_last_tick(function_id="cronapp-tick") == \
            datetime(2030, 1, 1, 13, 1, tzinfo=UTC)
    finally:
        await store.close()


def test_rerun_from_step_keeps_earlier_outputs(setup: Setup) -> None:
    first = setup.run("t/two", {"value": 1})
    step_b = next(s for s in first["steps"] if s["name"] == "b")
    r = setup.api("POST", f"/v1/runs/{first['id']}/rerun",
                  json={"step_id": step_b["id"], "input": {"value": 99}})
    assert r.status_code == 202, r.text
    run = setup.finish(r.json()["id"])
    assert run["status"] == "completed", run
    assert run["replay_of"] == first["id"]
    assert run["output"] == {"a": "A", "b": {"got": 99}}
    # step a kept its recorded output and was not called again; b ran once, on the edit
    assert setup.counts(run["id"]) == {"b": 1}
    unknown = setup.api("POST", f"/v1/runs/{first['id']}/rerun", json={"step_id": "nope"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "body.step_id"


def test_finish_timeout_cancels_an_overdue_run(setup: Setup) -> None:
    run = setup.finish(setup.start("t/overdue"), timeout=20)
    assert run["status"] == "cancelled", run
    assert run["error"]["name"] == "FinishTimeoutError"
    assert [s["name"] for s in run["steps"] if s["status"] == "completed"] == ["begin"]
    assert "never" not in setup.counts(run["id"])


def test_concurrency_key_from_the_sdk_config_holds_per_user(setup: Setup) -> None:
    ids = [setup.start("t/serial", {"user": user}) for user in ("ann", "ann", "ann", "bob")]
    for run_id in ids:
        assert setup.finish(run_id)["status"] == "completed"
    spans = httpx.get(f"{setup.app_url}/spans").json()
    by_user: dict[str, list[tuple[float, float]]] = {}
    for user, begun, ended in spans:
        by_user.setdefault(user, []).append((begun, ended))
    ann = sorted(by_user["ann"])[-3:]
    assert all(a[1] <= b[0] for a, b in zip(ann, ann[1:], strict=False)), ann  # never overlap
    bob = by_user["bob"][-1]
    assert any(b[0] < bob[1] and bob[0] < b[1] for b in ann), "other keys are not held up"


def test_idempotency_from_the_sdk_config_runs_once_per_key(setup: Setup) -> None:
    first = setup.send("t/order", {"order": "o-1"})
    second = setup.send("t/order", {"order": "o-1"})
    runs = setup.runs_of(first) + setup.final_runs_of(second)
    run_ids = {r["id"] for r in runs}
    assert len(run_ids) == 1, runs
    assert setup.finish(run_ids.pop())["status"] == "completed"
