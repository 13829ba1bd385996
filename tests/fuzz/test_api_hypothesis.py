"""Properties of the task API under generated input (hypothesis).

Promise (DESIGN.md §4, docs/guarantees.md): any input gets a 202/200 or a 4xx whose
body names the field, never a 5xx; a rejected request writes nothing; an accepted
task is stored as given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.fuzz.helpers import all_run_ids

FUZZ = settings(max_examples=150, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

FIELDS = ["url", "method", "headers", "body", "callback_url", "failure_callback_url",
          "retries", "timeout", "delay", "not_before", "idempotency_key", "queue"]

json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars,
                           lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=12)

urls = st.one_of(
    st.just("http://example.com/hook"),
    st.builds(lambda scheme, host, path: f"{scheme}://{host}/{path}",
              st.sampled_from(["http", "https", "ftp", "HTTP", "javascript", ""]),
              st.sampled_from(["example.com", "user:pw@example.com", "", "[::1]", "127.0.0.1",
                               "example.com:0", "example.com:70000", "exa mple.com"]),
              st.text(max_size=20)),
    st.text(max_size=60),
)

plausible = {
    "url": urls,
    "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "post", "HEAD", ""]),
    "headers": st.dictionaries(
        st.sampled_from(["X-A", "Authorization", "Content-Type", "Host", "webhook-id",
                         "X A", "", "x-\u00e9"]) | st.text(max_size=12),
        st.text(max_size=30) | st.integers(), max_size=4),
    "body": json_values,
    "callback_url": st.none() | urls,
    "failure_callback_url": st.none() | urls,
    "retries": st.integers(-5, 60) | st.booleans() | st.floats() | st.text(max_size=3),
    "timeout": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10, 1000),
    "delay": st.none() | st.floats(-5, 10**8, allow_nan=False) | st.text(max_size=5),
    "not_before": st.none() | st.datetimes().map(lambda d: d.isoformat())
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.text(max_size=30),
    "idempotency_key": st.none() | st.text(max_size=300) | st.integers(),
    "queue": st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True) | st.text(max_size=70),
}


valid = {
    "url": st.sampled_from(["http://example.com/hook", "https://api.example.com:8443/a?b=c",
                            "http://127.0.0.1:9/x", "https://[2606:4700:4700::1111]/"]),
    "method": st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
    "headers": st.dictionaries(st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True),
                               st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                       max_size=30), max_size=4),
    "body": json_values,
    "callback_url": st.none() | st.just("http://example.com/cb"),
    "failure_callback_url": st.none() | st.just("http://example.com/failed"),
    "retries": st.integers(0, 50),
    "timeout": st.floats(0.001, 900) | st.integers(1, 900),
    "delay": st.none() | st.floats(0, 86400) | st.integers(0, 86400),
    "not_before": st.none() | st.datetimes(timezones=st.timezones()).map(
        lambda d: d.isoformat()),
    "idempotency_key": st.none() | st.text(min_size=1, max_size=255),
    "queue": st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
}


@st.composite
def task_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed tasks with a few fields bent out of shape (or none)."""
    chosen = draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS)))
    if draw(st.integers(0, 4)) > 0 and "url" not in chosen:
        chosen.append("url")
    bent = draw(st.sets(st.sampled_from(chosen), max_size=2)) if chosen and \
        draw(st.booleans()) else set()
    payload = {}
    for name in chosen:
        if name in bent:
            payload[name] = draw(plausible[name] | json_values)
        else:
            payload[name] = draw(valid[name])
    if "delay" in payload and "not_before" in payload and draw(st.booleans()):
        del payload["not_before"]
    if draw(st.integers(0, 9)) == 0:
        payload[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    return payload


def check_answer(client: TestClient, response: Any, before: set[str],
                 runs: Callable[[], set[str]]) -> None:
    assert response.status_code < 500, response.text
    event(f"HTTP {response.status_code}")
    if response.status_code in (200, 202):
        return
    assert 400 <= response.status_code < 500
    body = response.json()
    assert body["status"] == response.status_code
    for error in body.get("errors", []):
        assert error["field"].startswith("body"), error
    assert body.get("errors"), "a rejection must name at least one field"
    assert runs() == before, "a rejected request wrote a run"


@FUZZ
@given(payload=task_payloads())
def test_any_task_dict_is_accepted_or_rejected_by_field(client: TestClient,
                                                        payload: dict[str, Any]) -> None:
    runs = lambda: all_run_ids(client)  # noqa: E731
    before = runs()
    response = client.post("/v1/tasks", json=payload)
    check_answer(client, response, before, runs)
    if response.status_code == 202:
        run = client.get(f"/v1/runs/{response.json()['id']}").json()
        if "idempotency_key" not in payload:
            assert response.status_code == 202
        assert run["input"]["url"] == payload["url"]
        assert run["input"]["method"] == payload.get("method", "POST")
        assert run["input"]["retries"] == payload.get("retries", 3)
        assert run["status"] == "queued" and run["function_id"] == "http"


@FUZZ
@given(payload=json_values)
def test_any_json_value_is_a_4xx_or_accepted(client: TestClient, payload: Any) -> None:
    runs = lambda: all_run_ids(client)  # noqa: E731
    before = runs()
    check_answer(client, client.post("/v1/tasks", json=payload), before, runs)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200))
def test_any_bytes_are_never_a_5xx(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/tasks", content=raw, headers={"content-type": "application/json"})
    assert 200 <= response.status_code < 500, response.text


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tasks=st.lists(task_payloads(), max_size=5))
def test_batch_is_all_or_nothing(client: TestClient, tasks: list[dict[str, Any]]) -> None:
    before = all_run_ids(client)
    response = client.post("/v1/tasks/batch", json={"tasks": tasks})
    assert response.status_code < 500, response.text
    after = all_run_ids(client)
    if response.status_code == 202:
        data = response.json()["data"]
        assert len(data) == len(tasks)
        assert {d["id"] for d in data if not d["duplicate"]} == after - before
    else:
        assert after == before, "a rejected batch wrote some of its runs"
        fields = [e["field"] for e in response.json()["errors"]]
        assert all(f.startswith("body") for f in fields)


@settings(max_examples=80, deadline=None)
@given(params=st.dictionaries(
    st.sampled_from(["status", "function_id", "queue", "event_id", "after", "before", "q",
                     "cursor", "limit"]),
    st.text(max_size=80) | st.integers().map(str), max_size=5))
def test_run_list_query_never_5xx(client: TestClient, params: dict[str, str]) -> None:
    response = client.get("/v1/runs", params=params)
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code in (400, 422):
        assert all(e["field"].startswith("query.") for e in response.json()["errors"])


@settings(max_examples=60, deadline=None)
@given(run_id=st.text(min_size=1, max_size=100).filter(lambda s: "/" not in s and s not in
                                                       {".", ".."}),
       action=st.sampled_from(["", "/wait?timeout=0", "/cancel", "/replay"]))
def test_unknown_run_ids_are_404(client: TestClient, run_id: str, action: str) -> None:
    from urllib.parse import quote

    path = f"/v1/runs/{quote(run_id, safe='')}{action}"
    method = "POST" if action in ("/cancel", "/replay") else "GET"
    response = client.request(method, path)
    assert response.status_code in (404, 422), (path, response.text)
