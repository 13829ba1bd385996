"""Stored secrets end to end: ``offload serve`` processes on SQLite and PostgreSQL.

Checked: admin scope guards ``/v1/secrets``; values are encrypted at rest (the
database file and table never hold the plain value); HTTP tasks get the value in
headers and the URL query at call time while the run, its steps, the callback and
every answer show the reference; a changed value is used from the next attempt; an
unknown name fails the run at once without calling the target; ``serve`` refuses to
start with secrets stored and no key; no value appears in any answer or log line.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.engine import EngineProcess, free_port
from tests.support.target import Target

ADMIN = "ofk_admin_secrets-test-" + "a" * 24
KEY = base64.b64encode(os.urandom(32)).decode()
VALUE_1 = "sk_live_first_VALUE_93f1"
VALUE_2 = "sk_live_second_VALUE_aa07"
QUERY_VALUE = "q&v=al/ue 7c"
ECHOED = "echo_me_secret_5512"
VALUES = (VALUE_1, VALUE_2, QUERY_VALUE, ECHOED)
SEEN: list[str] = []


@pytest.fixture(scope="module")
def database_url(module_store_url: str) -> str:
    return module_store_url


@pytest.fixture(scope="module")
def engine(database_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path_factory.mktemp("engine"), database_url=database_url,
                         mode="serve", env={"OFFLOAD_SECRETS_KEY": KEY, "OFFLOAD_API_KEYS": ADMIN,
                                            "OFFLOAD_OUTBOUND_ALLOW": "127.0.0.1/32"})
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def target(database_url: str) -> Iterator[Target]:
    t = Target().start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def api(engine: EngineProcess) -> Iterator[httpx.Client]:
    def keep(response: httpx.Response) -> None:
        response.read()
        SEEN.append(response.text)

    with httpx.Client(base_url=engine.url, timeout=30, headers={
            "Authorization": f"Bearer {ADMIN}"}, event_hooks={"response": [keep]}) as client:
        yield client


def wait_done(api: httpx.Client, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = api.get(f"/v1/runs/{run_id}/wait", params={"timeout": 30},
                                  timeout=40).json()
    assert run["status"] in ("completed", "failed", "cancelled"), run
    return run


def test_put_list_delete_and_admin_scope(api: httpx.Client, engine: EngineProcess,
                                         database_url: str) -> None:
    created = api.put("/v1/secrets/PAYMENTS_KEY", json={"value": VALUE_1})
    assert created.status_code == 201, created.text
    assert created.json()["reference"] == "{{ secrets.PAYMENTS_KEY }}"
    assert api.put("/v1/secrets/PAYMENTS_KEY", json={"value": VALUE_1}).status_code == 200
    listed = api.get("/v1/secrets").json()["data"]
    assert [s["name"] for s in listed] == ["PAYMENTS_KEY"]
    assert set(listed[0]) == {"name", "reference", "created_at", "updated_at"}
    for bad, field in ((("bad-name", {"value": "x"}), "path.name"),
                       (("OK", {"value": ""}), "body.value"),
                       (("OK", {"value": "a\nb"}), "body.value"),
                       (("OK", {"value": "x", "extra": 1}), "body.extra")):
        response = api.put(f"/v1/secrets/{bad[0]}", json=bad[1])
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == field
    assert [s["name"] for s in api.get("/v1/secrets").json()["data"]] == ["PAYMENTS_KEY"]
    assert httpx.get(f"{engine.url}/v1/secrets").status_code == 401
    assert api.delete("/v1/secrets/NOPE").status_code == 404
    assert api.put("/v1/secrets/TEMP", json={"value": "temp-value"}).status_code == 201
    assert api.delete("/v1/secrets/TEMP").status_code == 204
    # Encrypted at rest: the database never holds the value.
    if database_url.startswith("sqlite"):
        raw = Path(database_url.removeprefix("sqlite:///")).read_bytes()
        wal = Path(database_url.removeprefix("sqlite:///") + "-wal")
        raw += wal.read_bytes() if wal.exists() else b""
        assert VALUE_1.encode() not in raw
    else:
        import psycopg

        with psycopg.connect(database_url) as conn:
            rows = conn.execute("SELECT ciphertext FROM secrets").fetchall()
        assert rows and all(VALUE_1 not in r[0] for r in rows)


def test_task_gets_values_at_call_time_and_shows_references(api: httpx.Client,
                                                            target: Target) -> None:
    assert api.put("/v1/secrets/QUERY_KEY", json={"value": QUERY_VALUE}).status_code == 201
    assert api.put("/v1/secrets/ECHOED", json={"value": ECHOED}).status_code == 201
    target.script("/echo", (200, {"content-type": "application/json"},
                            json.dumps({"saw": ECHOED}).encode(), 0))
    task = api.post("/v1/tasks", json={
        "url": f"{target.url}/echo?key={{{{ secrets.QUERY_KEY }}}}&plain=1",
        "headers": {"Authorization": "Bearer {{ secrets.PAYMENTS_KEY }}",
                    "X-Echo": "{{secrets.ECHOED}}"},
        "callback_url": f"{target.url}/callback", "retries": 0})
    assert task.status_code == 202, task.text
    run = wait_done(api, task.json()["id"])
    assert run["status"] == "completed", run
    [call] = target.at("/echo")
    assert call.headers["authorization"] == f"Bearer {VALUE_1}"
    assert call.headers["x-echo"] == ECHOED
    full = api.get(f"/v1/runs/{run['id']}").json()
    assert full["input"]["url"].endswith("key={{ secrets.QUERY_KEY }}&plain=1")
    assert full["input"]["headers"]["X-Echo"] == "{{secrets.ECHOED}}"
    assert full["output"]["body"] == {"saw": "[secret]"}  # an echoed value is scrubbed
    target.wait_for(lambda: target.at("/callback"))
    callback = target.at("/callback")[0].body.decode()
    assert all(v not in callback for v in VALUES) and "[secret]" in callback


def test_query_value_reaches_the_target_encoded(api: httpx.Client) -> None:
    seen: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        task = api.post("/v1/tasks", json={
            "url": f"http://127.0.0.1:{port}/q?key={{{{ secrets.QUERY_KEY }}}}&n=1",
            "retries": 0})
        assert wait_done(api, task.json()["id"])["status"] == "completed"
    finally:
        server.shutdown()
    [path] = seen
    assert parse_qs(urlsplit(path).query) == {"key": [QUERY_VALUE], "n": ["1"]}


def test_new_value_is_used_from_the_next_attempt(api: httpx.Client, target: Target) -> None:
    assert api.put("/v1/secrets/ROTATING", json={"value": VALUE_1}).status_code == 201
    target.script("/rotate", (503, {"retry-after": "1"}, b"busy", 0), (200, {}, b"ok", 0))
    task = api.post("/v1/tasks", json={"url": f"{target.url}/rotate", "retries": 2,
                                       "headers": {"X-Key": "{{ secrets.ROTATING }}"}})
    target.wait_for(lambda: target.at("/rotate"))
    assert api.put("/v1/secrets/ROTATING", json={"value": VALUE_2}).status_code == 200
    run = wait_done(api, task.json()["id"])
    assert run["status"] == "completed" and run["attempt"] == 2
    assert [r.headers["x-key"] for r in target.at("/rotate")] == [VALUE_1, VALUE_2]


def test_unknown_secret_fails_at_once_without_a_call(api: httpx.Client, target: Target) -> None:
    task = api.post("/v1/tasks", json={"url": f"{target.url}/never", "retries": 5,
                                       "headers": {"X-Key": "{{ secrets.MISSING_ONE }}"}})
    assert task.status_code == 202
    run = wait_done(api, task.json()["id"])
    assert run["status"] == "failed" and run["attempt"] == 1
    assert run["error"]["name"] == "SecretNotFoundError"
    assert "MISSING_ONE" in run["error"]["message"]
    assert target.at("/never") == []
    bad = api.post("/v1/tasks", json={"url": f"{target.url}/x",
                                      "headers": {"X-Key": "{{ env.HOME }}"}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.headers"
    bad_url = api.post("/v1/tasks", json={"url": "http://{{ secrets.HOST }}/x"})
    assert bad_url.status_code == 422 and bad_url.json()["errors"][0]["field"] == "body.url"
    bad_callback = api.post("/v1/tasks", json={
        "url": f"{target.url}/x", "callback_url": f"{target.url}/c?k={{{{ secrets.A }}}}"})
    assert bad_callback.status_code == 422


def test_serve__webhook_receive_needs_no_key_management_needs_admin(
        api: httpx.Client, engine: EngineProcess) -> None:
    import hashlib
    import hmac

    created = api.post("/v1/webhooks", json={
        "name": "serve-gh", "verify": {"kind": "github", "secret": VALUE_2},
        "event": "serve/{{ headers.x-github-event }}"})
    assert created.status_code == 201, created.text
    hook = created.json()
    assert httpx.get(f"{engine.url}/v1/webhooks").status_code == 401
    body = b'{"zen": "ok"}'
    sig = "sha256=" + hmac.new(VALUE_2.encode(), body, hashlib.sha256).hexdigest()
    accepted = httpx.post(f"{engine.url}{hook['url']}", content=body, headers={
        "x-github-event": "ping", "x-github-delivery": "serve-1",
        "x-hub-signature-256": sig})
    SEEN.append(accepted.text)
    assert accepted.status_code == 200, accepted.text
    refused = httpx.post(f"{engine.url}{hook['url']}", content=body,
                         headers={"x-hub-signature-256": "sha256=00"})
    SEEN.append(refused.text)
    assert refused.status_code == 401
    events = api.get("/v1/events", params={"name": "serve/ping"}).json()["data"]
    assert len(events) == 1


def test_no_value_in_any_answer_or_log_line(engine: EngineProcess) -> None:
    log = engine.log_path.read_text(errors="replace")
    for value in VALUES:
        assert value not in log
        assert all(value not in text for text in SEEN), value
    assert len(SEEN) > 15


def test_serve_refuses_to_start_with_secrets_and_no_key(tmp_path: Path) -> None:
    env = {"OFFLOAD_SECRETS_KEY": KEY, "OFFLOAD_API_KEYS": ADMIN}
    with EngineProcess(tmp_path, mode="serve", env=env) as first:
        put = httpx.put(f"{first.url}/v1/secrets/S", json={"value": "v"},
                        headers={"Authorization": f"Bearer {ADMIN}"})
        assert put.status_code == 201
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    out = subprocess.run([sys.executable, "-m", "offload", "serve", "--port", str(free_port()),
                          "--data-dir", str(tmp_path)],
                         env={**clean, "OFFLOAD_API_KEYS": ADMIN}, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert "OFFLOAD_SECRETS_KEY" in out.stdout + out.stderr
