"""Identifiers with control characters are 4xx naming the field, the same on both stores.

Promise (docs/guarantees.md §7): bad input never reaches the database as a store
error. PostgreSQL ``text`` cannot hold NUL, so before this check a NUL in an event
name or a path parameter answered ``503 store_unavailable`` with ``Retry-After``
there (a client would retry forever) while SQLite stored it. NUL inside JSON *data*
stays accepted and comes back intact on both stores.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.fuzz.test_tasks_input import assert_problem

BAD_TEXT = ["a\x00b", "a\nb", "\x1f", "a\x7f", "\x85x"]


@pytest.mark.parametrize("bad", BAD_TEXT)
def test_event_name_with_control_characters_is_422(client: TestClient, bad: str) -> None:
    assert_problem(client.post("/v1/events", json={"name": bad}), 422, "body.name")


def test_event_id_with_nul_is_422(client: TestClient) -> None:
    assert_problem(client.post("/v1/events", json={"name": "ok", "id": "x\x00"}), 422,
                   "body.id")


def test_event_batch_with_one_bad_name_stores_nothing(client: TestClient) -> None:
    before = client.get("/v1/events", params={"name": "batch.ok"}).json()["data"]
    response = client.post("/v1/events", json=[{"name": "batch.ok"}, {"name": "bad\x00"}])
    assert_problem(response, 422, "[1].name")
    assert client.get("/v1/events", params={"name": "batch.ok"}).json()["data"] == before


def test_event_key_path_with_nul_is_404(client: TestClient) -> None:
    assert_problem(client.post("/e/k%00", json={"name": "x"}), 404, "path.event_key")


@pytest.mark.parametrize(("method", "path", "field"), [
    ("GET", "/v1/events/%00", "path.event_id"),
    ("GET", "/v1/events/a%0Ab", "path.event_id"),
    ("POST", "/v1/apps/%00/sync", "path.app_id"),
    ("GET", "/v1/apps/%00", "path.app_id"),
    ("GET", "/v1/functions/%00", "path.function_id"),
    ("GET", "/v1/functions/fn%7F", "path.function_id"),
    ("GET", "/v1/runs/bulk/%00", "path.job_id"),
    ("POST", "/v1/runs/%00/rerun", "path.run_id"),
])
def test_path_parameter_with_control_characters_is_404_naming_it(
        client: TestClient, method: str, path: str, field: str) -> None:
    assert_problem(client.request(method, path, json={}), 404, field)


@pytest.mark.parametrize(("path", "name"), [
    ("/v1/events", "name"), ("/v1/events", "cursor"), ("/v1/functions", "app_id"),
])
def test_query_parameter_with_nul_is_422_naming_it(client: TestClient, path: str,
                                                  name: str) -> None:
    assert_problem(client.get(path, params={name: "a\x00b"}), 422, f"query.{name}")


@pytest.mark.parametrize(("extra", "field"), [
    ({"queue": "q\x00"}, "body.queue"),
    ({"idempotency_key": "k\x00"}, "body.idempotency_key"),
    ({"concurrency_key": "k\x00", "concurrency_limit": 1}, "body.concurrency_key"),
])
def test_task_identifiers_with_nul_are_422(client: TestClient, extra: dict[str, Any],
                                           field: str) -> None:
    response = client.post("/v1/tasks", json={"url": "http://example.com/x", **extra})
    assert_problem(response, 422, field)


def test_nul_inside_event_data_is_stored_and_returned(client: TestClient) -> None:
    data = {"k\x00": "v\x00", "nested": ["\x00", {"\x01": "\x1f"}]}
    response = client.post("/v1/events", json={"name": "nul.data", "data": data,
                                               "user": {"u": "\x00"}})
    assert response.status_code == 202, response.text
    event_id = response.json()["ids"][0]
    event = client.get(f"/v1/events/{event_id}").json()
    assert event["data"] == data
    assert event["user"] == {"u": "\x00"}
