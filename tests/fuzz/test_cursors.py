"""Page cursors: ours walk every page once; anything else is 400 naming ``query.cursor``.

Before cursors were checksummed, ``GET /v1/runs?cursor=%%%garbage`` answered 200 with
an empty page (a client thought it reached the end), a foreign but well-formed
cursor answered the first page, and the events list ignored a junk cursor.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from offload.ids import new_id
from tests.fuzz.test_tasks_input import assert_problem


def walk(client: TestClient, path: str, params: dict[str, Any]) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        ids += [item["id"] for item in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


def test_run_and_event_cursors_walk_every_page_once(client: TestClient, tag: str) -> None:
    for _ in range(7):
        assert client.post("/v1/tasks", json={"url": "http://example.com/x", "queue": tag,
                                              "delay": 3600}).status_code == 202
        assert client.post("/v1/events", json={"name": tag}).status_code == 202
    runs = walk(client, "/v1/runs", {"queue": tag, "limit": 2})
    events = walk(client, "/v1/events", {"name": tag, "limit": 3})
    assert len(runs) == len(set(runs)) == 7
    assert len(events) == len(set(events)) == 7


def _cursor(client: TestClient, path: str, tag: str, body: dict[str, Any]) -> str:
    for _ in range(2):
        assert client.post("/v1/tasks" if "runs" in path else "/v1/events",
                           json=body).status_code == 202
    params = {"queue": tag} if "runs" in path else {"name": tag}
    cursor: str = client.get(path, params={**params, "limit": 1}).json()["next_cursor"]
    assert cursor
    return cursor


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/events"])
@pytest.mark.parametrize("cursor", ["%%%garbage", "zzzz", new_id(), "runs." + new_id() + ".00",
                                    "' OR 1=1 --", "0" * 64])
def test_malformed_cursor_is_400_naming_cursor(client: TestClient, path: str,
                                                cursor: str) -> None:
    body = assert_problem(client.get(path, params={"cursor": cursor}), 400, "query.cursor")
    assert body["code"] == "invalid_cursor"


def test_foreign_and_altered_cursors_are_400(client: TestClient, tag: str) -> None:
    run_cursor = _cursor(client, "/v1/runs", tag, {"url": "http://example.com/x",
                                                   "queue": tag, "delay": 3600})
    event_cursor = _cursor(client, "/v1/events", tag, {"name": tag})
    assert_problem(client.get("/v1/runs", params={"cursor": event_cursor}), 400,
                   "query.cursor")
    assert_problem(client.get("/v1/events", params={"cursor": run_cursor}), 400,
                   "query.cursor")
    kind, position, check = run_cursor.split(".")
    altered = f"{kind}.{position[:-1]}{'0' if position[-1] != '0' else '1'}.{check}"
    assert_problem(client.get("/v1/runs", params={"cursor": altered}), 400, "query.cursor")
    assert client.get("/v1/runs", params={"cursor": run_cursor}).status_code == 200
