"""Alerts firing and resolving against a real receiver on loopback, on real engine
processes and both stores: signed notifications (checked with the standardwebhooks
library), a Slack-compatible ``text``, retries of a failed delivery, rules from the
API and from settings, and bad input to ``/v1/alerts``."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.target import Received, Target
from tests.support.tasks import submit

pytestmark = [pytest.mark.slow]

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def receiver() -> Iterator[Target]:
    t = Target().start()
    yield t
    t.stop()


def _notes(receiver: Target, path: str) -> list[dict[str, Any]]:
    out = []
    for rec in receiver.at(path):
        if rec.method == "POST":
            out.append(json.loads(rec.body))
    return out


def _verified(rec: Received) -> Any:
    headers = {k: v for k, v in rec.headers.items() if k.startswith("webhook-")}
    return standardwebhooks.Webhook(SECRET).verify(rec.body.decode(), headers)


def _wait(predicate: Any, what: str, timeout: float = 40) -> Any:
    return eventually(predicate, timeout=timeout, interval=0.2, what=what)


def test_failure_rate_fires_and_resolves_with_signed_notifications(
        store_url: str, receiver: Target, tmp_path: Path) -> None:
    # the first delivery of each notification fails: it is retried like any task
    receiver.script("/hook", (500, {}, b"try again", 0.0), (200, {}, b"ok", 0.0))
    receiver.script("/fail", (400, {}, b"bad", 0.0))
    receiver.script("/slow", (200, {}, b"ok", 4.0))
    settings_rule = [{"name": "stuck-backlog", "kind": "oldest_due", "queue": "stuck",
                      "threshold": 1, "url": f"{receiver.url}/settings-hook"}]
    env = {"OFFLOAD_WEBHOOK_SECRET": SECRET, "OFFLOAD_ALERT_EVERY_S": "0.3",
           "OFFLOAD_ALERT_RULES": json.dumps(settings_rule)}
    with EngineProcess(tmp_path / "engine", database_url=store_url, env=env) as engine:
        api = httpx.Client(base_url=engine.url, timeout=30)
        created = api.post("/v1/alerts", json={
            "name": "flaky-failing", "kind": "failure_rate", "queue": "flaky",
            "threshold": 0.5, "window_s": 600, "min_runs": 2, "url": f"{receiver.url}/hook"})
        assert created.status_code == 201, created.text
        rule = created.json()
        assert rule["source"] == "api" and rule["state"]["status"] in ("pending", "ok")
        listed = {r["name"]: r for r in api.get("/v1/alerts").json()["data"]}
        assert listed["stuck-backlog"]["source"] == "settings"

        for _ in range(2):
            submit(api, url=f"{receiver.url}/fail", queue="flaky", retries=0)
        firing = _wait(lambda: [n for n in _notes(receiver, "/hook")
                                if n["status"] == "firing"], "the firing notification")
        note = firing[0]
        assert note["type"] == "offload.alert.firing"
        assert note["rule"]["name"] == "flaky-failing" and note["value"] == 1.0
        assert "FIRING" in note["text"] and "flaky-failing" in note["text"]
        deliveries = _wait(lambda: receiver.at("/hook")[:2] if len(receiver.at("/hook")) >= 2
                           else None, "the retried delivery")  # the 500, then the retry
        assert deliveries[0].headers["webhook-id"] == deliveries[1].headers["webhook-id"]
        assert _verified(deliveries[-1])["status"] == "firing"
        assert api.get(f"/v1/alerts/{rule['id']}").json()["state"]["status"] == "firing"
        assert f'offload_alert_firing{{rule="{rule["id"]}"}} 1.0' in api.get("/metrics").text

        for _ in range(3):  # 2 failed of 5: 40 %, under the 50 % threshold
            submit(api, url=f"{receiver.url}/ok", queue="flaky")
        resolved = _wait(lambda: [n for n in _notes(receiver, "/hook")
                                  if n["status"] == "resolved"], "the resolving notification")
        assert len({n["at"] for n in _notes(receiver, "/hook")}) == 2  # one firing, one resolving
        assert resolved[0]["type"] == "offload.alert.resolved"
        assert "RESOLVED" in resolved[0]["text"]
        events = api.get("/v1/alerts/events", params={"rule_id": rule["id"]}).json()["data"]
        assert [e["status"] for e in events] == ["resolved", "firing"]
        for event in events:  # each notification is a run of its own, delivered
            run = api.get(f"/v1/runs/{event['run_id']}").json()
            assert run["queue"] == "offload.alerts"
            _wait(lambda rid=event["run_id"]: api.get(f"/v1/runs/{rid}").json()["status"]
                  == "completed", "the notification run to complete")

        # the settings rule: one slow item in flight, the next one waits past 1 s
        submit(api, url=f"{receiver.url}/slow", queue="stuck", concurrency=1)
        submit(api, url=f"{receiver.url}/ok", queue="stuck", concurrency=1)
        _wait(lambda: [n for n in _notes(receiver, "/settings-hook")
                       if n["status"] == "firing"], "the oldest-due alert")
        _wait(lambda: [n for n in _notes(receiver, "/settings-hook")
                       if n["status"] == "resolved"], "the oldest-due alert to resolve")
        # exactly one notification per change of state
        assert [n["status"] for n in _notes(receiver, "/settings-hook")] == \
            ["firing", "resolved"]


def test_alert_api_refuses_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    settings_rule = [{"name": "declared", "kind": "dead_letter_growth", "threshold": 5,
                      "url": "http://127.0.0.1:9/hook"}]
    with EngineProcess(tmp_path / "engine",
                       env={"OFFLOAD_ALERT_RULES": json.dumps(settings_rule)}) as engine:
        api = httpx.Client(base_url=engine.url, timeout=30)
        good = {"name": "r1", "kind": "failure_rate", "threshold": 0.2,
                "url": "http://127.0.0.1:9/hook"}
        cases: list[tuple[dict[str, Any], str]] = [
            ({**good, "kind": "nope"}, "body.kind"),
            ({**good, "threshold": 2}, "body"),
            ({**good, "threshold": -1}, "body.threshold"),
            ({**good, "url": "ftp://example.com/x"}, "body.url"),
            ({**good, "url": "http://user:pw@example.com/x"}, "body.url"),
            ({**good, "name": "has space"}, "body.name"),
            ({**good, "window_s": 1}, "body.window_s"),
            ({**good, "queue": "bad queue"}, "body.queue"),
            ({**good, "extra": 1}, "body.extra"),
            ({**good, "kind": "cron_missed", "threshold": 60}, "body"),
            ({k: v for k, v in good.items() if k != "url"}, "body.url"),
            ({**good, "url": "http://10.1.2.3/hook"}, "body.url"),  # the SSRF guard
            ({**good, "url": "http://169.254.169.254/latest"}, "body.url"),
        ]
        for body, field in cases:
            r = api.post("/v1/alerts", json=body)
            assert r.status_code == 422, (body, r.text)
            fields = [e["field"] for e in r.json()["errors"]]
            assert any(f.startswith(field) for f in fields), (body, fields)
        assert api.post("/v1/alerts", content=b"{nope",
                        headers={"content-type": "application/json"}).status_code == 400
        clash = api.post("/v1/alerts", json={**good, "name": "declared"})
        assert clash.status_code == 409
        assert [r["name"] for r in api.get("/v1/alerts").json()["data"]] == ["declared"]
        assert api.delete("/v1/alerts/settings:declared").status_code == 409
        assert api.put("/v1/alerts/settings:declared", json=good).status_code == 409
        assert api.get("/v1/alerts/no-such-rule").status_code == 404
        assert api.get("/v1/alerts/bad%20id").status_code == 422
        made = api.post("/v1/alerts", json=good).json()
        assert api.post("/v1/alerts", json=good).status_code == 409  # the name is taken
        replaced = api.put(f"/v1/alerts/{made['id']}", json={**good, "threshold": 0.9})
        assert replaced.status_code == 200 and replaced.json()["threshold"] == 0.9
        assert api.put(f"/v1/alerts/{made['id']}", json={**good, "threshold": 9}
                       ).status_code == 422
        assert api.get(f"/v1/alerts/{made['id']}").json()["threshold"] == 0.9
        assert api.delete(f"/v1/alerts/{made['id']}").status_code == 204
        assert api.delete(f"/v1/alerts/{made['id']}").status_code == 404


def test_serve_refuses_malformed_alert_rules(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path / "engine", env={
        "OFFLOAD_ALERT_RULES": json.dumps([{"name": "x", "kind": "oldest_due",
                                            "threshold": 5, "url": "gopher://x"}])})
    with pytest.raises(RuntimeError) as exc:
        engine.start(timeout=15)
    assert "OFFLOAD_ALERT_RULES[0].url" in str(exc.value)


def test_alert_rules_from_the_cli(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    with EngineProcess(tmp_path / "engine") as engine:
        env = {**os.environ, "OFFLOAD_URL": engine.url}

        def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
            out = subprocess.run([sys.executable, "-m", "offload", "alerts", *args], env=env,
                                 capture_output=True, text=True, timeout=60)
            assert (out.returncode == 0) == ok, out.stderr + out.stdout
            return out

        made = json.loads(cli("create", "--name", "slow-mail", "--kind", "oldest_due",
                              "--queue", "mail", "--threshold", "120",
                              "--url", "http://127.0.0.1:9/hook", "--json").stdout)
        assert made["kind"] == "oldest_due" and made["queue"] == "mail"
        assert "slow-mail" in cli().stdout
        refused = cli("create", "--name", "bad", "--kind", "failure_rate", "--threshold", "3",
                      "--url", "http://127.0.0.1:9/hook", ok=False)
        assert "422" in refused.stderr and "threshold" in refused.stderr
        cli("delete", made["id"])
        listed = json.loads(cli("--json").stdout)["data"]
        assert listed == []
        assert json.loads(cli("events", "--json").stdout)["data"] == []
