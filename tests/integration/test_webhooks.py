"""Inbound provider webhooks end to end: a real ``offload dev`` process, a real target,
a real Inngest Python SDK app, on SQLite and on PostgreSQL.

Each signed request is built here from the provider's published scheme (hmac and
hashlib for Stripe, GitHub and generic HMAC; the ``standardwebhooks`` reference
library for Standard Webhooks). Checked: a verified delivery is acknowledged with
200 after one write and becomes an event (name from the template, data = the body)
that starts durable functions and, with ``forward``, an HTTP task carrying the body;
a redelivery answers 200 and starts nothing; bad and stale signatures answer 401 and
write nothing; rotation accepts both secrets during the overlap; an incoming
``traceparent`` is continued and ``correlation_id`` is stored and filterable; no
secret appears in any answer or log line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from tests.support.engine import EngineProcess, free_port
from tests.support.poll import answers, eventually
from tests.support.settled import events_fanned_out
from tests.support.target import Target

APP_SCRIPT = Path(__file__).parent / "apps" / "py_app.py"
STRIPE_SECRET = "whsec_stripe_integration_8c1d"  # noqa: S105
GITHUB_SECRET = "gh-integration-secret-77e0"  # noqa: S105
STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-key-32-bytes!!").decode()
TOKEN = "token-integration-41aa"  # noqa: S105
HMAC_SECRET = "hmac-integration-secret-0b9f"  # noqa: S105
ALL_SECRETS = (STRIPE_SECRET, GITHUB_SECRET, STANDARD_SECRET, TOKEN, HMAC_SECRET)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SEEN: list[str] = []
"""Every response body of this module, grepped for secrets at the end."""


@pytest.fixture(scope="module")
def database_url(module_store_url: str) -> str:
    return module_store_url


@pytest.fixture(scope="module")
def engine(database_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path_factory.mktemp("engine"), database_url=database_url,
                         env={"OFFLOAD_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()})
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def target(database_url: str) -> Iterator[Target]:
    """One target per store (the paths repeat across the two runs of the module)."""
    t = Target().start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def api(engine: EngineProcess) -> Iterator[httpx.Client]:
    def keep(response: httpx.Response) -> None:
        response.read()
        SEEN.append(response.text)

    with httpx.Client(base_url=engine.url, timeout=30,
                      event_hooks={"response": [keep]}) as client:
        yield client


@pytest.fixture(scope="module")
def sdk_app(engine: EngineProcess, api: httpx.Client,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env["INNGEST_DEV"] = engine.url
    log = (tmp_path_factory.mktemp("app") / "app.log").open("ab")
    proc = subprocess.Popen([sys.executable, str(APP_SCRIPT), "--framework", "fastapi",
                             "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: answers(f"{url}/counts"), timeout=30, interval=0.1,
                   what="the SDK app to start")
        synced = api.post("/v1/apps", json={"url": f"{url}/api/inngest"})
        assert synced.status_code == 200, synced.text
        yield url
    finally:
        proc.kill()
        proc.wait()


# -- signing per each provider's scheme ------------------------------------------------------

def stripe_headers(body: bytes, secret: str = STRIPE_SECRET, at: int | None = None
                   ) -> dict[str, str]:
    t = int(time.time()) if at is None else at
    v1 = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "stripe-signature": f"t={t},v1={v1}"}


def github_headers(body: bytes, delivery: str, event: str = "push",
                   secret: str = GITHUB_SECRET) -> dict[str, str]:
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-github-event": event,
            "x-github-delivery": delivery, "x-hub-signature-256": f"sha256={sig}"}


def standard_headers(body: bytes, msg_id: str, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    sig = standardwebhooks.Webhook(STANDARD_SECRET).sign(msg_id, at, body.decode())
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": sig}


# -- helpers -----------------------------------------------------------------------------------

def create(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


def deliveries(api: httpx.Client, hook: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = api.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    return out


def events_named(api: httpx.Client, name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = api.get("/v1/events", params={"name": name}).json()["data"]
    return out


def wait_runs(api: httpx.Client, event_id: str, n: int, timeout: float = 20
              ) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        runs: list[dict[str, Any]] = api.get(f"/v1/events/{event_id}").json()["runs"]
        return runs if len(runs) >= n else None

    return eventually(probe, timeout=timeout, what=f"{n} run(s) of event {event_id}")


def wait_done(api: httpx.Client, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = api.get(f"/v1/runs/{run_id}/wait", params={"timeout": 30},
                                  timeout=40).json()
    assert run["status"] in ("completed", "failed", "cancelled"), run
    return run


# -- tests ------------------------------------------------------------------------------------

def test_stripe__verified_forwarded_and_redelivery_starts_nothing(
        api: httpx.Client, target: Target) -> None:
    hook = create(api, name="stripe", verify={"kind": "stripe", "secret": STRIPE_SECRET},
                  forward={"url": f"{target.url}/stripe", "retries": 0, "queue": "stripe"})
    assert hook["url"] == f"/w/{hook['id']}" and hook["event"] == "stripe/{{ type }}"
    assert "secret" not in hook and hook["has_secret"] is True
    body = json.dumps({"id": "evt_1NG8Du2eZvKYlo2C", "object": "event",
                       "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}).encode()
    first = api.post(hook["url"], content=body, headers=stripe_headers(body))
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False and first.json()["delivery_id"] == \
        "evt_1NG8Du2eZvKYlo2C"
    # Stripe retries with a new timestamp (new signature) but the same event id.
    again = api.post(hook["url"], content=body,
                     headers=stripe_headers(body, at=int(time.time()) - 5))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["event_id"] == first.json()["event_id"]

    [event] = events_named(api, "stripe/invoice.paid")
    assert event["data"]["data"]["object"]["id"] == "in_1"
    assert event["correlation_id"] == "evt_1NG8Du2eZvKYlo2C"
    [kept] = deliveries(api, hook)
    assert kept["body"] == body.decode() and "stripe-signature" in kept["headers"]
    assert kept["event_id"] == event["id"]
    runs = api.get("/v1/runs", params={"queue": "stripe"}).json()["data"]
    assert len(runs) == 1 and runs[0]["event_ids"] == [event["id"]]
    assert runs[0]["id"] == kept["forward_run_id"]
    # the one forward task has ended (retries 0): no further call can be made
    assert wait_done(api, runs[0]["id"])["status"] == "completed"
    forwarded = target.at("/stripe")
    assert len(forwarded) == 1 and forwarded[0].body == body
    assert forwarded[0].headers["x-offload-event"] == "stripe/invoice.paid"


def test_bad_and_stale_signatures_answer_401_and_write_nothing(
        api: httpx.Client, target: Target) -> None:
    hooks = {
        "stripe": create(api, name="s2", verify={"kind": "stripe", "secret": STRIPE_SECRET},
                         event="refused/stripe",
                         forward={"url": f"{target.url}/refused", "retries": 0,
                                  "queue": "refused"}),
        "github": create(api, name="g2", verify={"kind": "github", "secret": GITHUB_SECRET},
                         event="refused/github"),
        "standard": create(api, name="w2", verify={"kind": "standard",
                                                   "secret": STANDARD_SECRET},
                           event="refused/standard"),
        "token": create(api, name="t2", verify={"kind": "token", "secret": TOKEN},
                        event="refused/token"),
    }
    body = json.dumps({"id": "evt_refused", "type": "x"}).encode()
    attempts = [
        ("stripe", stripe_headers(body, at=int(time.time()) - 400)),  # stale
        ("stripe", stripe_headers(body, secret="whsec_wrong")),
        ("stripe", {"stripe-signature": "garbage"}),
        ("stripe", stripe_headers(b'{"id": "evt_other"}')),  # signs another body
        ("github", github_headers(body, "d-bad", secret="wrong")),
        ("github", {"x-github-delivery": "d-bad"}),
        ("standard", standard_headers(body, "msg_stale",
                                      datetime.fromtimestamp(time.time() - 600, UTC))),
        ("standard", {"webhook-id": "m", "webhook-timestamp": "x",
                      "webhook-signature": "v1,!!"}),
        ("token", {"authorization": "Bearer nope"}),
        ("token", {}),
    ]
    for kind, headers in attempts:
        response = api.post(hooks[kind]["url"], content=body, headers=headers)
        assert response.status_code == 401, (kind, response.text)
        assert response.json()["code"] == "signature_refused"
    for kind, hook in hooks.items():
        assert deliveries(api, hook) == [], kind
        assert events_named(api, f"refused/{kind}") == [], kind
        refusals = api.get(f"/v1/webhooks/{hook['id']}").json()["recent_refusals"]
        assert refusals and all(r["reason"] for r in refusals)
    # the forward task is written with its delivery: there is none, so nothing can call
    assert api.get("/v1/runs", params={"queue": "refused"}).json()["data"] == []
    assert target.at("/refused") == []
    assert api.post("/w/01NOSUCHWEBHOOK", content=body).status_code == 404


def test_standard_webhooks__dedupe_by_webhook_id(api: httpx.Client) -> None:
    hook = create(api, name="svix", verify={"kind": "standard", "secret": STANDARD_SECRET},
                  event="std/{{ type }}")
    body = json.dumps({"type": "user.created", "data": {"id": 5}}).encode()
    first = api.post(hook["url"], content=body, headers=standard_headers(body, "msg_2Lh9"))
    second = api.post(hook["url"], content=body, headers=standard_headers(body, "msg_2Lh9"))
    third = api.post(hook["url"], content=body, headers=standard_headers(body, "msg_other"))
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert second.json()["duplicate"] and not third.json()["duplicate"]
    assert len(events_named(api, "std/user.created")) == 2
    assert {d["delivery_id"] for d in deliveries(api, hook)} == {"msg_2Lh9", "msg_other"}


def test_github__event_from_header_template_starts_a_durable_function(
        api: httpx.Client, sdk_app: str) -> None:
    hook = create(api, name="gh", verify={"kind": "github", "secret": GITHUB_SECRET},
                  event="t/{{ headers.x-github-event }}")
    body = json.dumps({"action": "opened", "skip": False, "number": 42}).encode()
    tp = f"00-{TRACE}-00f067aa0ba902b7-01"
    headers = {**github_headers(body, "9e6b3f10-gh-1", event="echo"), "traceparent": tp}
    accepted = api.post(hook["url"], content=body, headers=headers)
    assert accepted.status_code == 200, accepted.text
    [run] = wait_runs(api, accepted.json()["event_id"], 1)
    done = wait_done(api, run["id"])
    assert done["status"] == "completed", done
    assert done["output"]["name"] == "t/echo" and done["output"]["data"]["number"] == 42
    assert done["correlation_id"] == "9e6b3f10-gh-1"
    assert TRACE in api.get(f"/runs/{run['id']}").text  # the run continues the sender's trace
    redelivered = api.post(hook["url"], content=body, headers=headers)
    assert redelivered.json()["duplicate"] is True
    events_fanned_out(api.get)  # anything the redelivery could have started has started
    by_corr = api.get("/v1/runs", params={"correlation_id": "9e6b3f10-gh-1"}).json()["data"]
    assert [r["id"] for r in by_corr] == [run["id"]]  # the redelivery started nothing


def test_concurrent_redeliveries__exactly_one_event(api: httpx.Client,
                                                    engine: EngineProcess) -> None:
    from concurrent.futures import ThreadPoolExecutor

    hook = create(api, name="race", verify={"kind": "github", "secret": GITHUB_SECRET},
                  event="race/{{ n }}")
    body = json.dumps({"n": 1}).encode()
    headers = github_headers(body, "race-delivery-1")

    def send(_: int) -> httpx.Response:
        return httpx.post(f"{engine.url}{hook['url']}", content=body, headers=headers,
                          timeout=30)

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(send, range(24)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert sum(not a.json()["duplicate"] for a in answers) == 1
    assert len({a.json()["event_id"] for a in answers}) == 1
    assert len(events_named(api, "race/1")) == 1 and len(deliveries(api, hook)) == 1


def test_hmac_and_token_kinds_with_id_headers(api: httpx.Client) -> None:
    hmac_hook = create(api, name="shop", event="shop/{{ topic }}", verify={
        "kind": "hmac", "secret": HMAC_SECRET, "header": "X-Shop-Hmac-Sha256",
        "algorithm": "sha256", "encoding": "base64", "id_header": "X-Shop-Webhook-Id"})
    body = json.dumps({"topic": "orders/create", "id": 1}).encode()
    digest = base64.b64encode(hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).digest())
    headers = {"content-type": "application/json", "x-shop-hmac-sha256": digest.decode(),
               "x-shop-webhook-id": "shop-1"}
    assert api.post(hmac_hook["url"], content=body, headers=headers).json()["duplicate"] is False
    assert api.post(hmac_hook["url"], content=body, headers=headers).json()["duplicate"] is True
    assert len(events_named(api, "shop/orders/create")) == 1

    token_hook = create(api, name="tok", verify={"kind": "token", "secret": TOKEN,
                                                 "header": "X-Hook-Token"}, event="tok/in")
    ok = api.post(token_hook["url"], content=b"plain text", headers={"x-hook-token": TOKEN})
    assert ok.status_code == 200
    [event] = events_named(api, "tok/in")
    assert event["data"] == {"raw": "plain text"}
    [kept] = deliveries(api, token_hook)
    assert "x-hook-token" not in kept["headers"]  # the token is a credential: never kept


def test_rotation__both_secrets_accepted_during_the_overlap(api: httpx.Client) -> None:
    hook = create(api, name="rot", verify={"kind": "github", "secret": GITHUB_SECRET},
                  event="rot/{{ n }}")

    def send(n: int, secret: str) -> int:
        body = json.dumps({"n": n}).encode()
        return api.post(hook["url"], content=body,
                        headers=github_headers(body, f"rot-{n}", secret=secret)).status_code

    rotated = api.post(f"/v1/webhooks/{hook['id']}/rotate", json={"overlap": 3600})
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert rotated.json()["previous_secret_until"] is not None
    assert send(1, GITHUB_SECRET) == 200 and send(2, new_secret) == 200
    ended = api.post(f"/v1/webhooks/{hook['id']}/rotate",
                     json={"secret": "third-secret-xyz", "overlap": 0})
    assert ended.status_code == 200 and "secret" not in ended.json()
    assert send(3, new_secret) == 401 and send(4, GITHUB_SECRET) == 401
    assert send(5, "third-secret-xyz") == 200
    SEEN.remove(rotated.text)  # the one answer that shows a (generated) secret, once


def test_manage__validation_get_patch_delete(api: httpx.Client) -> None:
    bad = [
        ({"name": "x", "verify": {"kind": "stripe"}}, "body.verify.secret"),
        ({"name": "x", "verify": {"kind": "hmac", "secret": "s"}}, "body.verify.header"),
        ({"name": "x", "verify": {"kind": "github", "tolerance": 5}}, "body.verify.tolerance"),
        ({"name": "x", "verify": {"kind": "nope"}}, "body.verify.kind"),
        ({"name": "x", "verify": {"kind": "none"}, "event": "a/{{ b"}, "body.event"),
        ({"name": "x", "verify": {"kind": "none"}, "forward": {"url": "ftp://x"}},
         "body.forward.url"),
        ({"name": "x", "verify": {"kind": "none"},
          "forward": {"url": "http://127.0.0.1:9/", "body": "x"}}, "body.forward"),
        ({"name": "", "verify": {"kind": "none"}}, "body.name"),
        ({"verify": {"kind": "standard", "secret": "whsec_!!"}, "name": "x"},
         "body.verify.secret"),
    ]
    before = len(api.get("/v1/webhooks").json()["data"])
    for body, field in bad:
        response = api.post("/v1/webhooks", json=body)
        assert response.status_code == 422, (body, response.text)
        assert any(e["field"].startswith(field) for e in response.json()["errors"]), \
            (field, response.json())
    assert len(api.get("/v1/webhooks").json()["data"]) == before

    hook = create(api, name="crud", verify={"kind": "token"})
    generated = hook.pop("secret")
    SEEN.remove(SEEN[-1])  # the creation answer shows the generated secret once
    got = api.get(f"/v1/webhooks/{hook['id']}").json()
    assert generated not in json.dumps(got) and got["verify"] == {"kind": "token"}
    patched = api.patch(f"/v1/webhooks/{hook['id']}",
                        json={"name": "crud2", "event": "crud/{{ x }}"})
    assert patched.status_code == 200 and patched.json()["name"] == "crud2"
    ok = api.post(hook["url"], content=b'{"x": 1}',
                  headers={"authorization": f"Bearer {generated}"})
    assert ok.status_code == 200 and events_named(api, "crud/1")
    assert api.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert api.post(hook["url"], content=b"{}",
                    headers={"authorization": f"Bearer {generated}"}).status_code == 404
    assert api.get(f"/v1/webhooks/{hook['id']}").status_code == 404


def test_traceparent_and_correlation_id_on_tasks_and_forwards(
        api: httpx.Client, target: Target) -> None:
    tp = f"00-{TRACE}-b7ad6b7169203331-01"
    created = api.post("/v1/tasks", headers={"traceparent": tp}, json={
        "url": f"{target.url}/traced", "correlation_id": "order-1234", "retries": 0})
    assert created.status_code == 202, created.text
    run = wait_done(api, created.json()["id"])
    assert run["correlation_id"] == "order-1234"
    [received] = target.at("/traced")
    got = received.headers["traceparent"].split("-")
    assert got[1] == TRACE and got[2] != "b7ad6b7169203331" and got[3] == "01"
    listed = api.get("/v1/runs", params={"correlation_id": "order-1234"}).json()["data"]
    assert [r["id"] for r in listed] == [run["id"]]
    assert api.get("/v1/runs", params={"correlation_id": "nope"}).json()["data"] == []

    untraced = api.post("/v1/tasks", headers={"traceparent": "00-" + "0" * 32 + "-x-01"},
                        json={"url": f"{target.url}/untraced", "retries": 0})
    wait_done(api, untraced.json()["id"])
    assert TRACE not in target.at("/untraced")[0].headers["traceparent"]

    hook = create(api, name="traced", verify={"kind": "none", "id_header": "X-Id"},
                  event="traced/in", forward={"url": f"{target.url}/traced-forward",
                                              "retries": 0})
    sent = api.post(hook["url"], content=b'{"a": 1}',
                    headers={"traceparent": tp, "x-id": "trace-delivery-1"})
    assert sent.status_code == 200
    target.wait_for(lambda: target.at("/traced-forward"))
    assert target.at("/traced-forward")[0].headers["traceparent"].split("-")[1] == TRACE

    event = api.post("/e/anykey", headers={"traceparent": tp},
                     json={"name": "traced/event", "data": {}, "correlation_id": "corr-e"})
    assert event.status_code == 200, event.text
    [stored] = events_named(api, "traced/event")
    assert stored["correlation_id"] == "corr-e"
    bad = api.post("/v1/tasks", json={"url": f"{target.url}/x", "correlation_id": 5})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.correlation_id"


def test_no_secret_in_any_answer_or_log_line(engine: EngineProcess) -> None:
    log = engine.log_path.read_text(errors="replace")
    for secret in ALL_SECRETS:
        assert secret not in log
        for text in SEEN:
            assert secret not in text
    assert len(SEEN) > 20
