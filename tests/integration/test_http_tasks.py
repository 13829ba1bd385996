"""HTTP tasks end to end: a real ``offload dev`` process calls a real HTTP target.

Every test runs once on SQLite and once on PostgreSQL. One engine and one target
serve a whole module per store (starting a process per test would triple the wall
time); each test uses its own target paths and its own queue name, so tests do
not see each other's runs or requests.

Promises checked here (docs/guarantees.md): duplicate submissions are harmless
(6), slow or failing targets cost retries per policy, never a stuck run (9), and
signatures are verifiable and fresh with a stable ``webhook-id`` (10).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from offload.outbound.webhooks import generate_secret, verify
from tests.support.engine import EngineProcess, free_port
from tests.support.poll import eventually
from tests.support.settled import queue_drained
from tests.support.target import Received, Target
from tests.support.tasks import submit

TERMINAL = {"completed", "failed", "cancelled"}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database_url(module_store_url: str) -> str:
    """Each store in turn, one database for the whole module."""
    return module_store_url


@pytest.fixture(scope="module")
def secret() -> str:
    return generate_secret()


@pytest.fixture(scope="module")
def engine(database_url: str, secret: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path_factory.mktemp("engine"), database_url=database_url,
                         env={"OFFLOAD_WEBHOOK_SECRET": secret})
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target().start()
    yield t
    t.stop()


@pytest.fixture
def api(engine: EngineProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.url, timeout=30.0) as client:
        yield client


# -- helpers -------------------------------------------------------------------------------


def wait_done(api: httpx.Client, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    response = api.get(f"/v1/runs/{run_id}/wait", params={"timeout": timeout},
                       timeout=timeout + 10)
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    assert run["status"] in TERMINAL, f"run did not end in {timeout}s: {run}"
    return run


def get_run(api: httpx.Client, run_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def step(run: dict[str, Any], step_id: str) -> dict[str, Any]:
    found = [s for s in run["steps"] if s["id"] == step_id]
    assert found, f"no step {step_id!r} in {run['steps']}"
    return found[0]


def assert_signed(secret: str, rec: Received) -> None:
    verify(secret, rec.headers, rec.body)  # raises SignatureError otherwise
    assert abs(int(rec.headers["webhook-timestamp"]) - time.time()) < 60


def settle(api: httpx.Client, queue: str) -> None:
    """Wait until nothing is left that could call: ``queue`` holds no item (see
    :func:`tests.support.settled.queue_drained`). A wrongly scheduled extra call would
    be an item there; waiting for the queue to empty catches one due in an hour too."""
    queue_drained(api, queue)


# -- delivery and signatures ---------------------------------------------------------------


def test_task_is_delivered_signed_with_method_headers_and_body(
        api: httpx.Client, target: Target, secret: str, tag: str) -> None:
    path = f"/{tag}/hook"
    accepted = submit(api, url=target.url + path, method="PUT", body={"n": 1, "s": "é"},
                      headers={"X-Custom": "yes", "Authorization": "Bearer s3cr3t"}, queue=tag)
    assert accepted["status"] == "queued" and accepted["duplicate"] is False
    run = wait_done(api, accepted["id"])
    assert run["status"] == "completed"
    [rec] = target.at(path)
    assert rec.method == "PUT"
    assert orjson.loads(rec.body) == {"n": 1, "s": "é"}
    assert rec.headers["content-type"] == "application/json"
    assert rec.headers["x-custom"] == "yes"
    assert rec.headers["authorization"] == "Bearer s3cr3t"
    assert rec.headers["webhook-id"] == f"msg_{accepted['id']}"
    assert_signed(secret, rec)
    # credentials are stored for the call but never shown back
    assert "s3cr3t" not in orjson.dumps(run).decode()


def test_text_body_and_own_content_type(api: httpx.Client, target: Target, secret: str,
                                        tag: str) -> None:
    path = f"/{tag}/text"
    run = wait_done(api, submit(api, url=target.url + path, body="plain words",
                                headers={"Content-Type": "text/csv"})["id"])
    assert run["status"] == "completed"
    [rec] = target.at(path)
    assert rec.body == b"plain words"
    assert rec.headers["content-type"] == "text/csv"
    assert_signed(secret, rec)


def test_get_task_has_no_body(api: httpx.Client, target: Target, tag: str) -> None:
    path = f"/{tag}/get"
    wait_done(api, submit(api, url=target.url + path, method="GET")["id"])
    [rec] = target.at(path)
    assert rec.method == "GET" and rec.body == b""


def test_status_and_steps_visible_while_and_after_running(api: httpx.Client, target: Target,
                                                          tag: str) -> None:
    path = f"/{tag}/slow"
    target.script(path, (201, {"content-type": "application/json"}, b'{"made": true}', 1.5))
    run_id = submit(api, url=target.url + path)["id"]
    target.wait_for(lambda: target.at(path), timeout=10)
    during = get_run(api, run_id)
    assert during["status"] == "running"
    assert during["function_id"] == "http"
    wait = api.get(f"/v1/runs/{run_id}/wait", params={"timeout": 0.2})
    assert wait.status_code == 200 and wait.json()["status"] == "running"
    run = wait_done(api, run_id)
    assert run["status"] == "completed" and run["attempt"] == 1
    assert run["output"]["status"] == 201 and run["output"]["body"] == {"made": True}
    assert run["started_at"] and run["ended_at"] and run["error"] is None
    request = step(run, "request")
    assert request["kind"] == "request" and request["status"] == "completed"
    assert request["attempts"] == 1 and request["output"]["status"] == 201
    assert get_run(api, run_id) == run


def test_wait_returns_as_soon_as_the_run_ends(api: httpx.Client, target: Target,
                                              tag: str) -> None:
    path = f"/{tag}/w"
    target.script(path, (200, {}, b"ok", 0.5))
    run_id = submit(api, url=target.url + path)["id"]
    started = time.monotonic()
    run = wait_done(api, run_id, timeout=25)
    assert run["status"] == "completed"
    assert time.monotonic() - started < 5, "wait did not return promptly after the end"


def test_unknown_run_is_404_with_problem_body(api: httpx.Client) -> None:
    for response in (api.get("/v1/runs/nope"), api.get("/v1/runs/nope/wait"),
                     api.post("/v1/runs/nope/cancel"), api.post("/v1/runs/nope/replay")):
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


# -- retries -------------------------------------------------------------------------------


def test_retried_through_500s_with_stable_webhook_id(api: httpx.Client, target: Target,
                                                     secret: str, tag: str) -> None:
    path = f"/{tag}/flaky"
    target.script(path, (500, {}, b"boom", 0.0), (503, {}, b"busy", 0.0),
                  (200, {}, b"fine", 0.0))
    run_id = submit(api, url=target.url + path, retries=3, body={"k": 1})["id"]
    run = wait_done(api, run_id)
    assert run["status"] == "completed" and run["attempt"] == 3
    assert run["output"]["body"] == "fine"
    recs = target.at(path)
    assert len(recs) == 3
    assert {r.headers["webhook-id"] for r in recs} == {f"msg_{run_id}"}
    for rec in recs:
        assert_signed(secret, rec)
        assert orjson.loads(rec.body) == {"k": 1}
    assert step(run, "request")["attempts"] == 3


def test_retries_exhausted_fails_the_run(api: httpx.Client, target: Target, tag: str) -> None:
    path = f"/{tag}/down"
    target.script(path, (500, {}, b"down", 0.0))
    run = wait_done(api, submit(api, url=target.url + path, retries=1, queue=tag)["id"])
    assert run["status"] == "failed" and run["attempt"] == 2
    assert "500" in run["error"]["message"] and "attempt 2 of 2" in run["error"]["message"]
    assert run["output"]["status"] == 500
    assert step(run, "request")["status"] == "failed"
    settle(api, tag)
    assert len(target.at(path)) == 2


def test_429_retry_after_is_honoured(api: httpx.Client, target: Target, tag: str) -> None:
    path = f"/{tag}/limited"
    target.script(path, (429, {"Retry-After": "2"}, b"slow down", 0.0), (200, {}, b"ok", 0.0))
    run = wait_done(api, submit(api, url=target.url + path, retries=2)["id"])
    assert run["status"] == "completed" and run["attempt"] == 2
    first, second = target.at(path)
    gap = second.at - first.at
    assert 2.0 <= gap < 4.5, f"Retry-After: 2 gave a gap of {gap:.2f}s"


def test_429_retry_after_http_date_is_honoured(api: httpx.Client, target: Target,
                                               tag: str) -> None:
    path = f"/{tag}/limited-date"
    when = datetime.now(UTC) + timedelta(seconds=3)
    stamp = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    target.script(path, (429, {"Retry-After": stamp}, b"", 0.0), (200, {}, b"ok", 0.0))
    run = wait_done(api, submit(api, url=target.url + path, retries=2)["id"])
    assert run["status"] == "completed"
    first, second = target.at(path)
    assert second.at - first.at >= 1.5  # the date has one-second resolution


@pytest.mark.parametrize("status", [408, 409, 425, 429, 502])
def test_retriable_statuses_are_retried(api: httpx.Client, target: Target, tag: str,
                                        status: int) -> None:
    path = f"/{tag}/r{status}"
    target.script(path, (status, {}, b"again", 0.0), (200, {}, b"ok", 0.0))
    run = wait_done(api, submit(api, url=target.url + path, retries=1)["id"])
    assert run["status"] == "completed" and run["attempt"] == 2
    assert len(target.at(path)) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_non_retriable_4xx_fail_at_once(api: httpx.Client, target: Target, tag: str,
                                        status: int) -> None:
    path = f"/{tag}/f{status}"
    target.script(path, (status, {"content-type": "application/json"}, b'{"why": "no"}', 0.0))
    run = wait_done(api, submit(api, url=target.url + path, retries=5, queue=tag)["id"])
    assert run["status"] == "failed" and run["attempt"] == 1
    assert run["output"]["status"] == status and run["output"]["body"] == {"why": "no"}
    assert str(status) in run["error"]["message"]
    settle(api, tag)
    assert len(target.at(path)) == 1


def test_timeout_is_a_failed_attempt(api: httpx.Client, target: Target, tag: str) -> None:
    path = f"/{tag}/hang"
    target.script(path, (200, {}, b"late", 3.0))
    started = time.monotonic()
    run = wait_done(api, submit(api, url=target.url + path, timeout=0.5, retries=0)["id"])
    assert run["status"] == "failed"
    assert "timed out" in run["error"]["message"]
    assert time.monotonic() - started < 2.5, "the call outlived its timeout"


def test_timeout_then_success_on_retry(api: httpx.Client, target: Target, tag: str) -> None:
    path = f"/{tag}/hang-once"
    target.script(path, (200, {}, b"late", 3.0), (200, {}, b"quick", 0.0))
    run = wait_done(api, submit(api, url=target.url + path, timeout=0.5, retries=2)["id"])
    assert run["status"] == "completed" and run["attempt"] == 2
    assert run["output"]["body"] == "quick"


def test_connection_refused_is_retried_until_the_server_appears(api: httpx.Client,
                                                                tag: str) -> None:
    port = free_port()
    path = f"/{tag}/late-server"
    run_id = submit(api, url=f"http://127.0.0.1:{port}{path}", retries=10)["id"]

    def attempted() -> dict[str, Any] | None:
        run = get_run(api, run_id)
        return run if run["attempt"] >= 1 else None

    run = eventually(attempted, timeout=15, what=f"a first attempt of run {run_id}")
    assert run["status"] in {"queued", "running"}
    assert "ConnectError" in run["error"]["message"]
    assert step(run, "request")["status"] == "errored"
    late = Target(port=port).start()
    try:
        run = wait_done(api, run_id, timeout=40)
        assert run["status"] == "completed"
        assert len(late.at(path)) == 1
    finally:
        late.stop()


def test_connection_refused_exhausts_retries(api: httpx.Client, tag: str) -> None:
    run = wait_done(api, submit(api, url=f"http://127.0.0.1:{free_port()}/{tag}",
                                retries=1)["id"])
    assert run["status"] == "failed" and run["attempt"] == 2 and run["output"] is None
    assert run["error"]["name"] == "OutboundError"
    assert "ConnectError" in run["error"]["message"]


# -- callbacks -----------------------------------------------------------------------------


def test_callback_receives_the_outcome_signed(api: httpx.Client, target: Target, secret: str,
                                              tag: str) -> None:
    path, cb = f"/{tag}/work", f"/{tag}/cb"
    target.script(path, (500, {}, b"", 0.0),
                  (200, {"content-type": "application/json"}, b'{"result": 42}', 0.0))
    run_id = submit(api, url=target.url + path, callback_url=target.url + cb)["id"]
    wait_done(api, run_id)
    [rec] = target.wait_for(lambda: target.at(cb), timeout=15)
    assert rec.method == "POST"
    assert_signed(secret, rec)
    assert rec.headers["webhook-id"] == f"msg_{run_id}_callback"
    outcome = orjson.loads(rec.body)
    assert outcome["run_id"] == run_id and outcome["status"] == "completed"
    assert outcome["attempts"] == 2
    assert outcome["response"]["status"] == 200
    assert outcome["response"]["body"] == {"result": 42}
    assert outcome["error"] is None
    run = target.wait_for(lambda: (r := get_run(api, run_id)) and any(
        s["id"] == "callback" and s["status"] == "completed" for s in r["steps"]) and r)
    assert step(run, "callback")["kind"] == "callback"


def test_failure_callback_gets_the_failure(api: httpx.Client, target: Target, secret: str,
                                           tag: str) -> None:
    path, ok_cb, fail_cb = f"/{tag}/bad", f"/{tag}/ok-cb", f"/{tag}/fail-cb"
    target.script(path, (404, {}, b"gone", 0.0))
    run_id = submit(api, url=target.url + path, callback_url=target.url + ok_cb,
                    failure_callback_url=target.url + fail_cb, queue=tag)["id"]
    assert wait_done(api, run_id)["status"] == "failed"
    [rec] = target.wait_for(lambda: target.at(fail_cb), timeout=15)
    assert_signed(secret, rec)
    outcome = orjson.loads(rec.body)
    assert outcome["status"] == "failed" and outcome["attempts"] == 1
    assert outcome["response"]["status"] == 404 and outcome["response"]["body"] == "gone"
    assert "404" in outcome["error"]["message"]
    settle(api, tag)  # the failure callback was the one callback item
    assert target.at(ok_cb) == []


def test_callback_url_alone_also_hears_of_failure(api: httpx.Client, target: Target,
                                                  tag: str) -> None:
    path, cb = f"/{tag}/bad", f"/{tag}/cb"
    target.script(path, (400, {}, b"", 0.0))
    run_id = submit(api, url=target.url + path, callback_url=target.url + cb)["id"]
    wait_done(api, run_id)
    [rec] = target.wait_for(lambda: target.at(cb), timeout=15)
    assert orjson.loads(rec.body)["status"] == "failed"


def test_callback_is_retried(api: httpx.Client, target: Target, tag: str) -> None:
    path, cb = f"/{tag}/work", f"/{tag}/cb"
    target.script(cb, (503, {}, b"", 0.0), (200, {}, b"", 0.0))
    run_id = submit(api, url=target.url + path, callback_url=target.url + cb)["id"]
    wait_done(api, run_id)
    recs = target.wait_for(lambda: len(target.at(cb)) >= 2 and target.at(cb), timeout=15)
    assert recs[0].headers["webhook-id"] == recs[1].headers["webhook-id"]
    assert recs[0].body == recs[1].body


# -- scheduling ----------------------------------------------------------------------------


def test_start_timeout_cancels_a_task_that_waits_too_long(api: httpx.Client,
                                                           target: Target, tag: str) -> None:
    target.script(f"/{tag}/busy", (200, {}, b"ok", 3.0))
    submit(api, url=f"{target.url}/{tag}/busy", queue=tag, concurrency=1)
    target.wait_for(lambda: target.at(f"/{tag}/busy"))  # it holds the queue's only slot
    waiting = submit(api, url=f"{target.url}/{tag}/late", queue=tag, concurrency=1,
                     start_timeout=0.5)
    run = wait_done(api, waiting["id"], timeout=10)
    assert run["status"] == "cancelled", run
    assert run["error"]["name"] == "StartTimeoutError"
    settle(api, tag)  # the busy call has returned and nothing is left for /late
    assert target.at(f"/{tag}/late") == []


def test_finish_timeout_cancels_a_task_still_retrying(api: httpx.Client, target: Target,
                                                      tag: str) -> None:
    target.script(f"/{tag}/down", (503, {"Retry-After": "1"}, b"", 0.0))
    started = time.monotonic()
    run = wait_done(api, submit(api, url=f"{target.url}/{tag}/down", retries=20,
                                finish_timeout=2.5, queue=tag)["id"], timeout=15)
    assert run["status"] == "cancelled" and run["error"]["name"] == "FinishTimeoutError", run
    assert 2.0 < time.monotonic() - started < 8
    calls = len(target.at(f"/{tag}/down"))
    settle(api, tag)  # no retry is left scheduled
    assert len(target.at(f"/{tag}/down")) == calls  # never called again


def test_singleton_skip_and_cancel(api: httpx.Client, target: Target, tag: str) -> None:
    target.script(f"/{tag}/one", (200, {}, b"ok", 1.5))
    first = submit(api, url=f"{target.url}/{tag}/one", queue=tag, singleton={})
    target.wait_for(lambda: target.at(f"/{tag}/one"))
    second = submit(api, expect=200, url=f"{target.url}/{tag}/one", queue=tag, singleton={})
    assert second["outcome"] == "skipped"
    skipped = get_run(api, second["id"])
    assert skipped["status"] == "cancelled" and skipped["error"]["name"] == "singleton_skipped"
    assert wait_done(api, first["id"])["status"] == "completed"
    third = submit(api, url=f"{target.url}/{tag}/one", queue=tag, singleton={})
    assert third["outcome"] == "created"
    assert wait_done(api, third["id"])["status"] == "completed"
    assert len(target.at(f"/{tag}/one")) == 2

    waiting = submit(api, url=f"{target.url}/{tag}/two", delay=3600,
                     singleton={"key": tag, "mode": "cancel"})
    newer = submit(api, url=f"{target.url}/{tag}/two",
                   singleton={"key": tag, "mode": "cancel"})
    assert newer["outcome"] == "created"
    replaced = get_run(api, waiting["id"])
    assert replaced["status"] == "cancelled"
    assert replaced["error"]["name"] == "singleton_cancelled"
    assert wait_done(api, newer["id"])["status"] == "completed"


def test_delay_is_honoured(api: httpx.Client, target: Target, tag: str) -> None:
    path = f"/{tag}/later"
    sent = time.monotonic()
    run_id = submit(api, url=target.url + path, delay=1.5)["id"]
    assert get_run(api, run_id)["status"] == "queued"
    wait_done(api, run_id)
    [rec] = target.at(path)
    assert rec.at - sent >= 1.5


def test_not_before_is_honoured(api: httpx.Client, target: Target, tag: str) -> None:
    path = f"/{tag}/at"
    sent = time.monotonic()
    when = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    wait_done(api, submit(api, url=target.url + path, not_before=when)["id"])
    [rec] = target.at(path)
    assert rec.at - sent >= 1.4  # wall clock vs monotonic clock


def test_not_before_in_the_past_runs_now(api: httpx.Client, target: Target, tag: str) -> None:
    path = f"/{tag}/past"
    wait_done(api, submit(api, url=target.url + path, not_before="2000-01-01T00:00:00+02:00")
              ["id"], timeout=10)
    assert len(target.at(path)) == 1


def test_cancel_of_a_delayed_task_means_no_call(api: httpx.Client, target: Target,
                                                tag: str) -> None:
    path = f"/{tag}/never"
    run_id = submit(api, url=target.url + path, delay=1.0, queue=tag)["id"]
    response = api.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    again = api.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    settle(api, tag)  # the delayed attempt is gone with the cancel
    assert target.at(path) == []
    assert get_run(api, run_id)["status"] == "cancelled"


# -- idempotency, batch, replay ------------------------------------------------------------


def test_idempotency_key_returns_the_same_run(api: httpx.Client, target: Target,
                                              tag: str) -> None:
    path = f"/{tag}/once"
    task = {"url": target.url + path, "idempotency_key": f"order-{tag}", "queue": tag}
    first = submit(api, **task)
    again = submit(api, expect=200, **task)
    assert again["id"] == first["id"] and again["duplicate"] is True
    wait_done(api, first["id"])
    after = submit(api, expect=200, **task)
    assert after["id"] == first["id"] and after["duplicate"] is True
    settle(api, tag)
    assert len(target.at(path)) == 1
    assert get_run(api, first["id"])["idempotency_key"] == f"order-{tag}"


def test_concurrent_duplicates_make_one_run(engine: EngineProcess, target: Target,
                                            tag: str) -> None:
    path = f"/{tag}/race"
    task = {"url": target.url + path, "idempotency_key": f"race-{tag}", "queue": tag}
    answers: list[tuple[int, str]] = []
    barrier = threading.Barrier(10)

    def post() -> None:
        with httpx.Client(base_url=engine.url, timeout=30) as client:
            barrier.wait()
            response = client.post("/v1/tasks", json=task)
            answers.append((response.status_code, response.json()["id"]))

    threads = [threading.Thread(target=post) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({run_id for _, run_id in answers}) == 1, answers
    assert sorted(code for code, _ in answers) == [200] * 9 + [202]
    with httpx.Client(base_url=engine.url, timeout=30) as client:
        wait_done(client, answers[0][1])
        settle(client, tag)
    assert len(target.at(path)) == 1


def test_batch_creates_every_task(api: httpx.Client, target: Target, tag: str) -> None:
    tasks = [{"url": f"{target.url}/{tag}/b{i}", "body": {"i": i}, "queue": tag}
             for i in range(5)]
    tasks.append({"url": f"{target.url}/{tag}/dup", "idempotency_key": f"b-{tag}",
                  "queue": tag})
    tasks.append({"url": f"{target.url}/{tag}/dup", "idempotency_key": f"b-{tag}",
                  "queue": tag})
    response = api.post("/v1/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert len(data) == 7
    assert len({d["id"] for d in data[:6]}) == 6
    assert data[6]["id"] == data[5]["id"] and data[6]["duplicate"] is True
    for d in data[:6]:
        assert wait_done(api, d["id"])["status"] == "completed"
    for i in range(5):
        [rec] = target.at(f"/{tag}/b{i}")
        assert orjson.loads(rec.body) == {"i": i}
    settle(api, tag)
    assert len(target.at(f"/{tag}/dup")) == 1


def test_replay_creates_a_linked_run(api: httpx.Client, target: Target, tag: str) -> None:
    path = f"/{tag}/again"
    target.script(path, (400, {}, b"", 0.0), (200, {}, b"ok", 0.0))
    first = wait_done(api, submit(api, url=target.url + path, body={"x": 1})["id"])
    assert first["status"] == "failed"
    response = api.post(f"/v1/runs/{first['id']}/replay")
    assert response.status_code == 202, response.text
    replay = response.json()
    assert replay["id"] != first["id"] and replay["replay_of"] == first["id"]
    done = wait_done(api, replay["id"])
    assert done["status"] == "completed" and done["input"] == first["input"]
    recs = target.at(path)
    assert len(recs) == 2 and recs[0].body == recs[1].body
    assert get_run(api, first["id"])["status"] == "failed"


def test_rerun_from_request_with_edited_body(api: httpx.Client, target: Target,
                                             tag: str) -> None:
    path = f"/{tag}/edit"
    target.script(path, (400, {}, b"bad input", 0.0), (200, {}, b"ok", 0.0))
    first = wait_done(api, submit(api, url=target.url + path, body={"n": -1},
                                  headers={"Authorization": "Bearer s3cret"})["id"])
    assert first["status"] == "failed"
    response = api.post(f"/v1/runs/{first['id']}/rerun",
                        json={"step_id": "request", "input": {"body": {"n": 1}}})
    assert response.status_code == 202, response.text
    rerun = wait_done(api, response.json()["id"])
    assert rerun["status"] == "completed" and rerun["replay_of"] == first["id"]
    recs = target.at(path)
    assert [json.loads(r.body) for r in recs] == [{"n": -1}, {"n": 1}]
    assert recs[1].headers["authorization"] == "Bearer s3cret"  # kept, though never shown
    bad = api.post(f"/v1/runs/{first['id']}/rerun",
                   json={"step_id": "request", "input": {"retries": -1}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.input.retries"


# -- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303])
def test_post_never_becomes_get_on_redirect(api: httpx.Client, target: Target, tag: str,
                                            status: int) -> None:
    path, dest = f"/{tag}/moved", f"/{tag}/dest"
    target.script(path, (status, {"Location": dest}, b"", 0.0))
    run = wait_done(api, submit(api, url=target.url + path, body={"a": 1}, retries=2,
                                queue=tag)["id"])
    assert run["status"] == "failed" and run["attempt"] == 1
    assert run["output"]["status"] == status
    settle(api, tag)
    assert target.at(dest) == []
    assert [r.method for r in target.at(path)] == ["POST"]


@pytest.mark.parametrize("status", [307, 308])
def test_307_and_308_keep_method_and_body(api: httpx.Client, target: Target, secret: str,
                                          tag: str, status: int) -> None:
    path, dest = f"/{tag}/moved", f"/{tag}/dest"
    target.script(path, (status, {"Location": dest}, b"", 0.0))
    run = wait_done(api, submit(api, url=target.url + path, method="PATCH",
                                body={"a": 1})["id"])
    assert run["status"] == "completed"
    [rec] = target.at(dest)
    assert rec.method == "PATCH" and orjson.loads(rec.body) == {"a": 1}
    assert_signed(secret, rec)


# -- listing -------------------------------------------------------------------------------


def test_run_list_filters_and_cursor_pagination(api: httpx.Client, target: Target,
                                                tag: str) -> None:
    target.script(f"/{tag}/no", (400, {}, b"", 0.0))
    ok = [submit(api, url=f"{target.url}/{tag}/yes", queue=tag)["id"] for _ in range(5)]
    bad = [submit(api, url=f"{target.url}/{tag}/no", queue=tag)["id"] for _ in range(2)]
    for run_id in ok + bad:
        wait_done(api, run_id)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"queue": tag, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/runs", params=params).json()
        pages += 1
        assert len(page["data"]) <= 3
        seen += [r["id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
        assert pages < 10
    assert sorted(seen) == sorted(ok + bad) and len(seen) == 7
    assert seen == sorted(seen, reverse=True), "newest first (ids are time-ordered)"
    assert pages == 3
    failed = api.get("/v1/runs", params={"queue": tag, "status": "failed"}).json()["data"]
    assert sorted(r["id"] for r in failed) == sorted(bad)
    both = api.get("/v1/runs", params={"queue": tag, "status": "failed,completed"}).json()
    assert len(both["data"]) == 7
    repeated = api.get("/v1/runs", params=[("queue", tag), ("status", "failed"),
                                           ("status", "completed")]).json()
    assert len(repeated["data"]) == 7
    found = api.get("/v1/runs", params={"q": bad[0]}).json()["data"]
    assert [r["id"] for r in found] == [bad[0]]
    assert api.get("/v1/runs", params={"queue": tag, "function_id": "nope"}).json()["data"] \
        == []
    after = datetime.now(UTC) + timedelta(hours=1)
    assert api.get("/v1/runs", params={"queue": tag, "after": after.isoformat()}
                   ).json()["data"] == []
    bad_status = api.get("/v1/runs", params={"status": "exploded"})
    assert bad_status.status_code == 422
    assert bad_status.json()["errors"][0]["field"] == "query.status"


def test_dead_letter_view_lists_failed_runs(api: httpx.Client, target: Target,
                                            tag: str) -> None:
    target.script(f"/{tag}/dead", (500, {}, b"", 0.0))
    run_id = submit(api, url=f"{target.url}/{tag}/dead", retries=0)["id"]
    wait_done(api, run_id)
    page = api.get("/v1/runs", params={"status": "failed", "limit": 500}).json()
    assert all(r["status"] == "failed" for r in page["data"])
    [dead] = [r for r in page["data"] if r["id"] == run_id]
    assert dead["error"]["name"] == "HTTPStatusError"
    assert dead["ended_at"] is not None


def test_client_package_round_trip(engine: EngineProcess, target: Target, tag: str) -> None:
    from offload import Client
    from offload.errors import ClientError

    with Client(engine.url) as client:
        run = client.create_task(f"{target.url}/{tag}/c", body={"via": "client"}, queue=tag)
        done = client.wait_run(run["id"], timeout=20)
        assert done["status"] == "completed"
        assert client.list_runs(queue=tag)["data"][0]["id"] == run["id"]
        with pytest.raises(ClientError) as info:
            client.create_task("ftp://example.com")
        assert info.value.status == 422

