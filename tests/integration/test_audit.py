"""The audit log on real engine processes, both stores: one entry per operator action —
cancel, replay, rerun, bulk jobs, pause and resume, alert, secret and webhook changes,
API keys made and revoked with the CLI, dashboard logins (success and failure) and
dashboard actions — with the actor (API key id and name, dashboard user, CLI user),
target and request id; ``GET /v1/audit`` filters and pages; runs show who acted on
them; bad input answers 4xx naming the field."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.target import Target
from tests.support.tasks import submit

pytestmark = [pytest.mark.slow]

ENV_KEY = "ofk_admin_audit-test-env-key-0123456789abcdef"
PASSWORD = "an audit password of some length"


def _cli(store_url: str, data_dir: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "offload", *args, "--database-url", store_url,
                          "--data-dir", str(data_dir)], capture_output=True, text=True,
                         timeout=60, env=os.environ.copy())
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def _entries(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/v1/audit", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


def _csrf(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def test_every_operator_action_is_audited_with_its_actor(store_url: str, target: Target,
                                                         tmp_path: Path) -> None:
    from offload.security.passwords import hash_password

    data_dir = tmp_path / "engine"
    made = _cli(store_url, data_dir, "keys", "create", "--scope", "admin", "--name", "ops-alice")
    key_id = re.search(r"key id: (\S+)", made).group(1)  # type: ignore[union-attr]
    alice = made.strip().splitlines()[1]
    ingest = _cli(store_url, data_dir, "keys", "create", "--scope", "ingest", "--name", "ing")
    ingest_key = ingest.strip().splitlines()[1]
    env = {"OFFLOAD_API_KEYS": ENV_KEY,
           "OFFLOAD_DASHBOARD_PASSWORD_HASH": hash_password(PASSWORD, n=2**14),
           "OFFLOAD_SECRETS_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
           "OFFLOAD_OUTBOUND_ALLOW": "127.0.0.1/32"}
    with EngineProcess(data_dir, database_url=store_url, mode="serve", env=env) as engine:
        api = httpx.Client(base_url=engine.url, timeout=30,
                           headers={"Authorization": f"Bearer {alice}"})
        done = submit(api, url=f"{target.url}/ok", queue="audit")["id"]
        api.get(f"/v1/runs/{done}/wait", params={"timeout": 20})
        later = submit(api, url=f"{target.url}/later", queue="audit", delay=3600)["id"]
        other = submit(api, url=f"{target.url}/later", queue="bulk", delay=3600)["id"]

        assert api.post(f"/v1/runs/{later}/cancel",
                        headers={"X-Request-Id": "req-cancel-1"}).status_code == 200
        replay = api.post(f"/v1/runs/{done}/replay").json()["id"]
        rerun = api.post(f"/v1/runs/{done}/rerun", json={"step_id": "request"}).json()["id"]
        bulk = api.post("/v1/runs/bulk", json={"action": "cancel",
                                               "filter": {"queue": "bulk"}})
        assert bulk.status_code == 202, bulk.text
        assert api.post("/v1/queues/audit/pause").status_code == 200
        assert api.post("/v1/queues/audit/resume").status_code == 200
        assert api.post("/v1/functions/http/pause").status_code == 200
        assert api.post("/v1/functions/http/resume").status_code == 200
        rule = api.post("/v1/alerts", json={"name": "r", "kind": "dead_letter_growth",
                                            "threshold": 5, "url": f"{target.url}/a"})
        assert rule.status_code == 201, rule.text
        assert api.delete(f"/v1/alerts/{rule.json()['id']}").status_code == 204
        assert api.put("/v1/secrets/STRIPE_KEY", json={"value": "sk_live_abc"}
                       ).status_code in (200, 201)
        assert api.delete("/v1/secrets/STRIPE_KEY").status_code == 204
        hook = api.post("/v1/webhooks", json={"name": "gh", "verify": {"kind": "github"}})
        assert hook.status_code == 201, hook.text
        hook_id = hook.json()["id"]
        assert api.patch(f"/v1/webhooks/{hook_id}", json={"name": "gh2"}).status_code == 200
        assert api.post(f"/v1/webhooks/{hook_id}/rotate", json={}).status_code == 200
        assert api.delete(f"/v1/webhooks/{hook_id}").status_code == 204
        # refused requests are not operator actions
        assert api.post("/v1/runs/nope/cancel").status_code == 404
        assert httpx.post(f"{engine.url}/v1/queues/x/pause",
                          headers={"Authorization": f"Bearer {ingest_key}"}).status_code == 403

        # the dashboard: a failed and a successful login, then an action
        browser = httpx.Client(base_url=engine.url, timeout=30)
        csrf = _csrf(browser, "/login")
        failed = browser.post("/login", data={"csrf": csrf, "secret": "wrong", "next": "/"})
        assert failed.status_code == 401
        ok = browser.post("/login", data={"csrf": csrf, "secret": PASSWORD, "next": "/"})
        assert ok.status_code == 303
        queued = submit(api, url=f"{target.url}/later", queue="audit", delay=3600)["id"]
        csrf = _csrf(browser, f"/runs/{queued}")
        assert browser.post(f"/runs/{queued}/cancel", data={"csrf": csrf}).status_code == 303

        _cli(store_url, data_dir, "keys", "revoke", key_id)

        admin = httpx.Client(base_url=engine.url, timeout=30,
                             headers={"Authorization": f"Bearer {ENV_KEY}"})
        entries = _entries(admin)
        actions = [e["action"] for e in entries]
        for expected in ("key.create", "run.cancel", "run.replay", "run.rerun", "bulk.start",
                         "queue.pause", "queue.resume", "function.pause", "function.resume",
                         "alert.create", "alert.delete", "secret.put", "secret.delete",
                         "webhook.create", "webhook.update", "webhook.rotate",
                         "webhook.delete", "dashboard.login", "key.revoke"):
            assert expected in actions, (expected, actions)
        assert actions.count("run.cancel") == 2  # the API's and the dashboard's
        assert entries == sorted(entries, key=lambda e: e["id"], reverse=True)

        by_action = {e["action"]: e for e in reversed(entries)}  # the latest of each
        cancel = next(e for e in entries if e["action"] == "run.cancel"
                      and e["target"]["id"] == later)
        assert cancel["actor"] == {"kind": "api_key", "id": key_id, "name": "ops-alice"}
        assert cancel["request_id"] == "req-cancel-1" and cancel["outcome"] == "ok"
        assert by_action["run.replay"]["target"] == {"kind": "run", "id": done}
        assert by_action["run.replay"]["related_id"] == replay
        assert by_action["run.rerun"]["related_id"] == rerun
        assert by_action["bulk.start"]["target"]["id"] == bulk.json()["id"]
        assert by_action["secret.put"]["target"] == {"kind": "secret", "id": "STRIPE_KEY"}
        assert by_action["webhook.create"]["target"]["id"] == hook_id
        assert by_action["queue.pause"]["target"] == {"kind": "queue", "id": "audit"}
        logins = [e for e in entries if e["action"] == "dashboard.login"]
        assert sorted(e["outcome"] for e in logins) == ["failed", "ok"]
        assert next(e for e in logins if e["outcome"] == "ok")["actor"]["name"] == "password"
        dash_cancel = next(e for e in entries if e["action"] == "run.cancel"
                           and e["target"]["id"] == queued)
        assert dash_cancel["actor"]["kind"] == "dashboard"
        assert dash_cancel["actor"]["name"] == "password"
        assert by_action["key.create"]["actor"]["kind"] == "cli"
        assert by_action["key.revoke"]["target"]["id"] == key_id
        assert not [e for e in entries if e["target"]["id"] in ("nope", "x")]
        assert "sk_live_abc" not in str(entries)  # never a secret value

        # runs show who acted on them (the source and the new run alike)
        run = admin.get(f"/v1/runs/{done}").json()
        assert [a["action"] for a in run["actions"]] == ["run.replay", "run.rerun"]
        assert run["actions"][0]["actor"]["name"] == "ops-alice"
        assert [a["action"] for a in admin.get(f"/v1/runs/{replay}").json()["actions"]] == \
            ["run.replay"]
        assert admin.get(f"/v1/runs/{later}").json()["actions"][0]["action"] == "run.cancel"
        page = browser.get(f"/runs/{later}")
        assert "run.cancel" in page.text and "ops-alice" in page.text

        # filters and the cursor
        assert {e["action"] for e in _entries(admin, action="run.cancel")} == {"run.cancel"}
        assert {e["actor"]["name"] for e in _entries(admin, actor="ops-alice")} == \
            {"ops-alice"}
        assert {e["action"] for e in _entries(admin, target_id=done)} == \
            {"run.replay", "run.rerun"}
        seen: list[str] = []
        cursor = None
        while True:
            page_body = admin.get("/v1/audit", params={"limit": 3, **(
                {"cursor": cursor} if cursor else {})}).json()
            seen += [e["id"] for e in page_body["data"]]
            cursor = page_body["next_cursor"]
            if cursor is None:
                break
        assert seen == [e["id"] for e in _entries(admin)]
        # a run cancelled by a bulk job shows who started the job
        eventually(lambda: admin.get(f"/v1/runs/{other}").json()["status"] == "cancelled",
                   timeout=30, interval=0.2, what=f"the bulk job to cancel run {other}")
        bulk_actions = admin.get(f"/v1/runs/{other}").json()["actions"]
        assert [(a["action"], a["actor"]["name"]) for a in bulk_actions] == \
            [("bulk.start", "ops-alice")]

        # only admins read the log
        assert httpx.get(f"{engine.url}/v1/audit").status_code == 401
        assert httpx.get(f"{engine.url}/v1/audit", headers={
            "Authorization": f"Bearer {ingest_key}"}).status_code == 403


def test_audit_endpoint_refuses_bad_input(tmp_path: Path) -> None:
    with EngineProcess(tmp_path / "engine") as engine:
        api = httpx.Client(base_url=engine.url, timeout=30)
        for params, field in (({"limit": 0}, "query.limit"), ({"limit": 501}, "query.limit"),
                              ({"cursor": "nope"}, "query.cursor"),
                              ({"action": "DROP TABLE"}, "query.action"),
                              ({"after": "2030-01-01T00:00:00"}, "query.after"),
                              ({"before": "yesterday"}, "query.before"),
                              ({"actor": "x" * 201}, "query.actor")):
            r = api.get("/v1/audit", params=params)
            assert r.status_code in (400, 422), (params, r.text)
            assert field in [e["field"] for e in r.json()["errors"]], (params, r.text)
        assert api.get("/v1/audit").json() == {"data": [], "next_cursor": None}


APP_SCRIPT = Path(__file__).resolve().parent / "apps" / "py_app.py"


def test_app_syncs_are_audited(store_url: str, tmp_path: Path) -> None:
    from tests.support.engine import free_port

    with EngineProcess(tmp_path / "engine", database_url=store_url) as engine:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
        env["INNGEST_DEV"] = engine.url
        log = (tmp_path / "app.log").open("ab")
        app = subprocess.Popen([sys.executable, str(APP_SCRIPT), "--framework", "fastapi",
                                "--port", str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
        try:
            api = httpx.Client(base_url=engine.url, timeout=30)
            url = f"http://127.0.0.1:{port}/api/inngest"
            tried: list[httpx.Response] = []

            def register() -> httpx.Response | None:  # the app takes a moment to listen
                tried.append(api.post("/v1/apps", json={"url": url}))
                return tried[-1] if tried[-1].status_code == 200 else None

            registered = eventually(register, timeout=30, interval=0.3,
                                    what=f"the app at {url} to register",
                                    detail=lambda: tried[-1].text)
            app_id = registered.json()["id"]
            assert api.post(f"/v1/apps/{app_id}/sync").status_code == 200
            browser = httpx.Client(base_url=engine.url, timeout=30)
            csrf = _csrf(browser, "/apps")
            assert browser.post(f"/apps/{app_id}/resync",
                                data={"csrf": csrf}).status_code == 303
            # a failed sync is not an action that happened
            assert api.post("/v1/apps", json={"url": "http://127.0.0.1:9/x"}
                            ).status_code >= 400
            entries = _entries(api)
        finally:
            app.kill()
            app.wait()
    kinds = [(e["action"], e["actor"]["kind"], e["target"]["id"]) for e in reversed(entries)]
    assert ("app.register", "open", app_id) in kinds
    assert ("app.sync", "open", app_id) in kinds
    assert ("app.sync", "dashboard", app_id) in kinds
    assert ("app.sync", "sdk", app_id) in kinds  # the SDK's signed register call
    assert all(e["target"]["id"] == app_id for e in entries if e["action"].startswith("app."))
