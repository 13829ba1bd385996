"""Bad input to ``POST /v1/tasks`` and ``/v1/tasks/batch``: every field, every way.

Promise (DESIGN.md §4, docs/guarantees.md): bad input gets a 4xx whose body names
the field, and nothing is half-written — after each bad request the run list is
exactly as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

URL = "http://example.com/hook"


def ok(**extra: Any) -> dict[str, Any]:
    return {"url": URL, **extra}


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


# (id, request JSON, field named in errors[].field)
BAD_TASKS: list[tuple[str, Any, str]] = [
    # url
    ("url-missing", {}, "body.url"),
    ("url-null", {"url": None}, "body.url"),
    ("url-number", {"url": 123}, "body.url"),
    ("url-list", {"url": [URL]}, "body.url"),
    ("url-empty", {"url": ""}, "body.url"),
    ("url-ftp", {"url": "ftp://example.com/x"}, "body.url"),
    ("url-javascript", {"url": "javascript:alert(1)"}, "body.url"),
    ("url-file", {"url": "file:///etc/passwd"}, "body.url"),
    ("url-relative", {"url": "/hook"}, "body.url"),
    ("url-no-host", {"url": "http:///hook"}, "body.url"),
    ("url-userinfo", {"url": "http://user:pw@example.com/"}, "body.url"),
    ("url-user-only", {"url": "https://user@example.com/"}, "body.url"),
    ("url-too-long", {"url": "http://example.com/" + "a" * 2100}, "body.url"),
    ("url-space", {"url": "http://exa mple.com/"}, "body.url"),
    ("url-crlf", {"url": "http://example.com/\r\nX: y"}, "body.url"),
    ("url-bad-port", {"url": "http://example.com:99999/"}, "body.url"),
    ("url-port-zero", {"url": "http://example.com:0/"}, "body.url"),
    ("url-bad-ipv6", {"url": "http://[::1/"}, "body.url"),
    # method
    ("method-lower", ok(method="post"), "body.method"),
    ("method-unknown", ok(method="BREW"), "body.method"),
    ("method-number", ok(method=1), "body.method"),
    ("method-connect", ok(method="CONNECT"), "body.method"),
    # headers
    ("headers-list", ok(headers=[["X-A", "1"]]), "body.headers"),
    ("headers-string", ok(headers="X-A: 1"), "body.headers"),
    ("header-value-number", ok(headers={"X-A": 1}), "body.headers.X-A"),
    ("header-value-null", ok(headers={"X-A": None}), "body.headers.X-A"),
    ("header-value-list", ok(headers={"X-A": ["1"]}), "body.headers.X-A"),
    ("header-crlf", ok(headers={"X-A": "a\r\nHost: evil"}), "body.headers"),
    ("header-lf", ok(headers={"X-A": "a\nb"}), "body.headers"),
    ("header-nul", ok(headers={"X-A": "a\x00b"}), "body.headers"),
    ("header-name-space", ok(headers={"X A": "1"}), "body.headers"),
    ("header-name-colon", ok(headers={"X-A:": "1"}), "body.headers"),
    ("header-name-empty", ok(headers={"": "1"}), "body.headers"),
    ("header-host", ok(headers={"Host": "evil.example"}), "body.headers"),
    ("header-content-length", ok(headers={"Content-Length": "5"}), "body.headers"),
    ("header-transfer-encoding", ok(headers={"transfer-encoding": "chunked"}), "body.headers"),
    ("header-connection", ok(headers={"Connection": "close"}), "body.headers"),
    ("header-webhook-id", ok(headers={"webhook-id": "forged"}), "body.headers"),
    ("header-webhook-signature", ok(headers={"Webhook-Signature": "v1,x"}), "body.headers"),
    ("header-too-long", ok(headers={"X-A": "a" * 8193}), "body.headers"),
    ("header-non-ascii", ok(headers={"X-A": "caf\u00e9"}), "body.headers"),
    ("header-name-non-ascii", ok(headers={"X-\u00e9": "1"}), "body.headers"),
    ("headers-too-many", ok(headers={f"X-{i}": "1" for i in range(65)}), "body.headers"),
    # body
    ("get-with-body", ok(method="GET", body={"a": 1}), "body.body"),
    ("get-with-empty-string-body", ok(method="GET", body=""), "body.body"),
    ("body-int-over-64-bits", ok(body=2**64), "body.body"),
    ("body-nested-int-over-64-bits", ok(body={"a": [-(2**70)]}), "body.body"),
    ("body-nested-too-deep", ok(body=nested(300)), "body.body"),
    # callbacks
    ("callback-not-url", ok(callback_url="nope"), "body.callback_url"),
    ("callback-number", ok(callback_url=5), "body.callback_url"),
    ("callback-ftp", ok(callback_url="ftp://example.com/"), "body.callback_url"),
    ("callback-userinfo", ok(callback_url="http://a:b@example.com/"), "body.callback_url"),
    ("failure-callback-not-url", ok(failure_callback_url="nope"), "body.failure_callback_url"),
    ("failure-callback-list", ok(failure_callback_url=[URL]), "body.failure_callback_url"),
    ("failure-callback-no-host", ok(failure_callback_url="https://"),
     "body.failure_callback_url"),
    # retries
    ("retries-negative", ok(retries=-1), "body.retries"),
    ("retries-51", ok(retries=51), "body.retries"),
    ("retries-huge", ok(retries=10**30), "body.retries"),
    ("retries-string", ok(retries="3"), "body.retries"),
    ("retries-float", ok(retries=3.0), "body.retries"),
    ("retries-fraction", ok(retries=2.5), "body.retries"),
    ("retries-bool", ok(retries=True), "body.retries"),
    ("retries-null", ok(retries=None), "body.retries"),
    # timeout
    ("timeout-zero", ok(timeout=0), "body.timeout"),
    ("timeout-negative", ok(timeout=-1), "body.timeout"),
    ("timeout-901", ok(timeout=901), "body.timeout"),
    ("timeout-string", ok(timeout="5"), "body.timeout"),
    ("timeout-bool", ok(timeout=True), "body.timeout"),
    ("timeout-object", ok(timeout={"s": 5}), "body.timeout"),
    # delay / not_before
    ("delay-and-not-before", ok(delay=1, not_before="2030-01-01T00:00:00Z"), "body.not_before"),
    ("delay-negative", ok(delay=-1), "body.delay"),
    ("delay-too-long", ok(delay=400 * 86400), "body.delay"),
    ("delay-string", ok(delay="10s"), "body.delay"),
    ("delay-bool", ok(delay=False), "body.delay"),
    ("not-before-naive", ok(not_before="2030-01-01T00:00:00"), "body.not_before"),
    ("not-before-garbage", ok(not_before="tomorrow"), "body.not_before"),
    ("not-before-list", ok(not_before=["2030-01-01T00:00:00Z"]), "body.not_before"),
    # idempotency_key
    ("idempotency-empty", ok(idempotency_key=""), "body.idempotency_key"),
    ("idempotency-too-long", ok(idempotency_key="k" * 256), "body.idempotency_key"),
    ("idempotency-number", ok(idempotency_key=5), "body.idempotency_key"),
    ("idempotency-object", ok(idempotency_key={"k": 1}), "body.idempotency_key"),
    ("idempotency-nul", ok(idempotency_key="a\x00b"), "body.idempotency_key"),
    ("idempotency-newline", ok(idempotency_key="a\nb"), "body.idempotency_key"),
    # queue
    ("queue-space", ok(queue="a b"), "body.queue"),
    ("queue-slash", ok(queue="a/b"), "body.queue"),
    ("queue-empty", ok(queue=""), "body.queue"),
    ("queue-too-long", ok(queue="q" * 65), "body.queue"),
    ("queue-number", ok(queue=7), "body.queue"),
    # flow control
    ("concurrency-zero", ok(concurrency=0), "body.concurrency"),
    ("concurrency-huge", ok(concurrency=10**9), "body.concurrency"),
    ("concurrency-string", ok(concurrency="2"), "body.concurrency"),
    ("concurrency-bool", ok(concurrency=True), "body.concurrency"),
    ("concurrency-key-without-limit", ok(concurrency_key="k"), "body.concurrency_limit"),
    ("concurrency-limit-without-key", ok(concurrency_limit=2), "body.concurrency_limit"),
    ("concurrency-key-empty", ok(concurrency_key="", concurrency_limit=1),
     "body.concurrency_key"),
    ("concurrency-key-too-long", ok(concurrency_key="k" * 256, concurrency_limit=1),
     "body.concurrency_key"),
    ("throttle-empty", ok(throttle={}), "body.throttle.limit"),
    ("throttle-string", ok(throttle="1/s"), "body.throttle"),
    ("throttle-limit-zero", ok(throttle={"limit": 0, "period": "1s"}), "body.throttle.limit"),
    ("throttle-burst-zero", ok(throttle={"limit": 1, "period": "1s", "burst": 0}),
     "body.throttle.burst"),
    ("throttle-period-garbage", ok(throttle={"limit": 1, "period": "soon"}),
     "body.throttle.period"),
    ("throttle-period-over-7d", ok(throttle={"limit": 1, "period": "8d"}),
     "body.throttle.period"),
    ("throttle-period-overflow", ok(throttle={"limit": 1, "period": 8.64e13}),
     "body.throttle.period"),
    ("throttle-unknown-field", ok(throttle={"limit": 1, "period": "1s", "x": 1}),
     "body.throttle.x"),
    ("rate-limit-period-negative", ok(rate_limit={"limit": 1, "period": -1}),
     "body.rate_limit.period"),
    ("rate-limit-period-overflow", ok(rate_limit={"limit": 1, "period": 8.64e13}),
     "body.rate_limit.period"),
    ("rate-limit-key-empty", ok(rate_limit={"limit": 1, "period": "1s", "key": ""}),
     "body.rate_limit.key"),
    ("priority-601", ok(priority=601), "body.priority"),
    ("priority--601", ok(priority=-601), "body.priority"),
    ("priority-string", ok(priority="1"), "body.priority"),
    ("priority-float", ok(priority=1.5), "body.priority"),
    ("debounce-empty", ok(debounce={}), "body.debounce.period"),
    ("debounce-list", ok(debounce=[1]), "body.debounce"),
    ("debounce-period-zero", ok(debounce={"period": "0s"}), "body.debounce.period"),
    ("debounce-period-bool", ok(debounce={"period": True}), "body.debounce.period"),
    ("debounce-timeout-zero", ok(debounce={"period": "1s", "timeout": 0}),
     "body.debounce.timeout"),
    # shape
    ("unknown-field", ok(colour="red"), "body.colour"),
    ("unknown-field-typo", ok(retry=3), "body.retry"),
    ("json-list", [ok()], "body"),
    ("json-number", 5, "body"),
    ("json-string", "http://example.com", "body"),
    ("json-null", None, "body"),
    ("json-true", True, "body"),
]


@pytest.fixture
def no_new_runs(client: TestClient,
                run_ids: Callable[[], set[str]]) -> Iterator[None]:
    """The test must leave the run list exactly as it found it."""
    before = run_ids()
    yield
    assert run_ids() == before, "a rejected request wrote a run"


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] and body["title"]
    if field is not None:
        fields = [e["field"] for e in body["errors"]]
        assert any(f == field or f.startswith(field + ".") for f in fields), \
            f"expected an error on {field!r}, got {body['errors']}"
        for error in body["errors"]:
            assert error["code"] and error["message"]
    return body


@pytest.mark.parametrize(("payload", "field"), [(p, f) for _, p, f in BAD_TASKS],
                         ids=[name for name, _, _ in BAD_TASKS])
def test_bad_task_is_422_naming_the_field(client: TestClient, no_new_runs: None,
                                          payload: Any, field: str) -> None:
    response = client.post("/v1/tasks", json=payload)
    assert_problem(response, 422, field)


@pytest.mark.parametrize("raw", [b"{bad", b'{"url": ', b"\xff\xfe", b"{'url': 'x'}",
                                 b'{"url": "http://example.com"} trailing', b"[1,"],
                         ids=["brace", "truncated", "not-utf8", "single-quotes", "trailing",
                              "open-list"])
def test_malformed_json_is_400(client: TestClient, no_new_runs: None, raw: bytes) -> None:
    response = client.post("/v1/tasks", content=raw,
                           headers={"content-type": "application/json"})
    body = assert_problem(response, 400, "body")
    assert body["code"] == "malformed_json"


# Strings JSON allows but Python/PostgreSQL/HTTP cannot carry (raw, since httpx would
# refuse to encode a lone surrogate).
RAW_BAD: list[tuple[str, str, str]] = [
    ("body-lone-surrogate", f'{{"url": "{URL}", "body": "\\ud800"}}', "body.body"),
    ("body-key-lone-surrogate", f'{{"url": "{URL}", "body": {{"\\udfff": 1}}}}', "body.body"),
    ("header-lone-surrogate", f'{{"url": "{URL}", "headers": {{"X-A": "\\ud800"}}}}',
     "body.headers"),
    ("idempotency-lone-surrogate", f'{{"url": "{URL}", "idempotency_key": "\\ud800"}}',
     "body.idempotency_key"),
    ("idempotency-escaped-nul", f'{{"url": "{URL}", "idempotency_key": "\\u0000"}}',
     "body.idempotency_key"),
    ("url-lone-surrogate", '{"url": "http://example.com/\\ud800"}', "body.url"),
    ("callback-lone-surrogate", f'{{"url": "{URL}", "callback_url": "http://e.com/\\ud800"}}',
     "body.callback_url"),
]


@pytest.mark.parametrize(("raw", "field"), [(r, f) for _, r, f in RAW_BAD],
                         ids=[name for name, _, _ in RAW_BAD])
def test_unencodable_strings_are_422(client: TestClient, no_new_runs: None, raw: str,
                                     field: str) -> None:
    response = client.post("/v1/tasks", content=raw.encode(),
                           headers={"content-type": "application/json"})
    assert_problem(response, 422, field)


def test_absurd_nesting_is_a_4xx(client: TestClient, no_new_runs: None) -> None:
    raw = (f'{{"url": "{URL}", "body": ' + "[" * 5000 + "]" * 5000 + "}").encode()
    response = client.post("/v1/tasks", content=raw, headers={"content-type": "application/json"})
    assert_problem(response, response.status_code, "body")
    assert 400 <= response.status_code < 500


def test_nul_in_json_strings_of_body_is_stored_and_returned(client: TestClient) -> None:
    """JSON \u0000 inside the task body is legal JSON and must survive both stores."""
    response = client.post("/v1/tasks", json=ok(delay=3600, body={"a\x00": "b\x00"}))
    assert response.status_code == 202, response.text
    run = client.get(f"/v1/runs/{response.json()['id']}").json()
    assert run["input"]["body"] == {"a\x00": "b\x00"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_non_json_content_type_is_rejected(client: TestClient, no_new_runs: None,
                                           content_type: str) -> None:
    response = client.post("/v1/tasks", content=json.dumps(ok()).encode(),
                           headers={"content-type": content_type})
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code, "body")


def test_empty_body_is_rejected(client: TestClient, no_new_runs: None) -> None:
    response = client.post("/v1/tasks", content=b"",
                           headers={"content-type": "application/json"})
    assert_problem(response, 422, "body")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_rejected(client: TestClient, no_new_runs: None,
                                         value: str) -> None:
    for field in ("timeout", "delay"):
        raw = f'{{"url": "{URL}", "{field}": {value}}}'.encode()
        response = client.post("/v1/tasks", content=raw,
                               headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, response.text


def test_oversize_body_is_413_with_problem_body(client: TestClient, no_new_runs: None) -> None:
    big = ok(body="x" * (1024 * 1024 + 10))
    response = client.post("/v1/tasks", json=big)
    body = assert_problem(response, 413, "body")
    assert body["code"] == "payload_too_large"


def test_oversize_chunked_body_without_length_is_413(client: TestClient,
                                                     no_new_runs: None) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"url": "http://example.com", "body": "'
        for _ in range(12):
            yield b"x" * 100_000
        yield b'"}'

    response = client.post("/v1/tasks", content=chunks(),
                           headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    body = assert_problem(response, 413, "body")
    assert body["code"] == "payload_too_large"


def test_batch_oversize_is_413(client: TestClient, no_new_runs: None) -> None:
    tasks = [ok(body="y" * 2000) for _ in range(600)]
    assert_problem(client.post("/v1/tasks/batch", json={"tasks": tasks}), 413, "body")


# -- batch ---------------------------------------------------------------------------------

BAD_BATCHES: list[tuple[str, Any, str]] = [
    ("missing-tasks", {}, "body.tasks"),
    ("empty", {"tasks": []}, "body.tasks"),
    ("too-many", {"tasks": [ok()] * 1001}, "body.tasks"),
    ("not-a-list", {"tasks": ok()}, "body.tasks"),
    ("null", {"tasks": None}, "body.tasks"),
    ("unknown-field", {"tasks": [ok()], "atomic": False}, "body.atomic"),
    ("one-bad-url", {"tasks": [ok(), ok(), ok(), {"url": "nope"}, ok()]}, "body.tasks[3].url"),
    ("one-bad-retries", {"tasks": [ok(), ok(retries=99)]}, "body.tasks[1].retries"),
    ("one-not-object", {"tasks": [ok(), "http://example.com"]}, "body.tasks[1]"),
    ("last-of-1000-bad", {"tasks": [ok()] * 999 + [ok(queue="no spaces")]},
     "body.tasks[999].queue"),
    ("list", [ok()], "body"),
]


@pytest.mark.parametrize(("payload", "field"), [(p, f) for _, p, f in BAD_BATCHES],
                         ids=[name for name, _, _ in BAD_BATCHES])
def test_bad_batch_is_422_and_writes_nothing(client: TestClient, no_new_runs: None,
                                             payload: Any, field: str) -> None:
    assert_problem(client.post("/v1/tasks/batch", json=payload), 422, field)


def test_batch_of_1000_is_accepted(client: TestClient, run_ids: Callable[[], set[str]]) -> None:
    """The upper bound itself is fine (and the other batch tests' 422s are not a size cap)."""
    before = run_ids()
    response = client.post("/v1/tasks/batch", json={"tasks": [ok(delay=3600)] * 1000})
    assert response.status_code == 202, response.text
    ids = {d["id"] for d in response.json()["data"]}
    assert len(ids) == 1000 and run_ids() == before | ids


def test_valid_edge_values_are_accepted(client: TestClient) -> None:
    """The limits are inclusive where documented, so the 422s above are the right side."""
    for task in (ok(retries=0), ok(retries=50), ok(timeout=900), ok(timeout=0.001),
                 ok(delay=0), ok(idempotency_key="k" * 255), ok(queue="q" * 64),
                 ok(not_before="2030-01-01T00:00:00+05:30"), ok(method="GET"),
                 ok(headers={"X-A": ""}), ok(body=None), ok(body=[1, "two", {"3": None}]),
                 ok(url="https://[2606:4700:4700::1111]:8443/p?q=1")):
        response = client.post("/v1/tasks", json=task)
        assert response.status_code == 202, (task, response.text)


# -- runs API input ------------------------------------------------------------------------

BAD_RUN_QUERIES: list[tuple[str, dict[str, Any], str]] = [
    ("status-unknown", {"status": "exploded"}, "query.status"),
    ("limit-zero", {"limit": 0}, "query.limit"),
    ("limit-huge", {"limit": 501}, "query.limit"),
    ("limit-text", {"limit": "ten"}, "query.limit"),
    ("after-garbage", {"after": "yesterday"}, "query.after"),
    ("after-naive", {"after": "2030-01-01T00:00:00"}, "query.after"),
    ("before-naive", {"before": "2030-01-01T00:00:00"}, "query.before"),
    ("queue-too-long", {"queue": "q" * 65}, "query.queue"),
]


@pytest.mark.parametrize(("params", "field"), [(p, f) for _, p, f in BAD_RUN_QUERIES],
                         ids=[name for name, _, _ in BAD_RUN_QUERIES])
def test_bad_run_list_query_names_the_parameter(client: TestClient, params: dict[str, Any],
                                                field: str) -> None:
    assert_problem(client.get("/v1/runs", params=params), 422, field)


@pytest.mark.parametrize("cursor", ["", "zzzz", "' OR 1=1 --", "\x00", "0" * 64])
def test_tampered_cursor_never_errors(client: TestClient, cursor: str) -> None:
    response = client.get("/v1/runs", params={"cursor": cursor})
    assert response.status_code in (200, 400, 422), response.text


@pytest.mark.parametrize("name", ["q", "queue", "function_id", "event_id", "cursor"])
def test_nul_in_run_filters_is_422_not_503(client: TestClient, name: str) -> None:
    assert_problem(client.get("/v1/runs", params={name: "a\x00b"}), 422, f"query.{name}")


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("GET", "/wait?timeout=0"),
                                                ("POST", "/cancel"), ("POST", "/replay")])
def test_nul_in_run_id_is_404_not_503(client: TestClient, method: str, suffix: str) -> None:
    assert_problem(client.request(method, f"/v1/runs/a%00b{suffix}"), 404)


def test_wait_timeout_out_of_range(client: TestClient) -> None:
    run_id = client.post("/v1/tasks", json=ok(delay=3600)).json()["id"]
    for value in ("-1", "301", "soon"):
        response = client.get(f"/v1/runs/{run_id}/wait", params={"timeout": value})
        assert_problem(response, 422, "query.timeout")
