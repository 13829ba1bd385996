"""Helpers shared by the fuzz tests."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient


def all_run_ids(client: TestClient) -> set[str]:
    """Every run id in the store (the fuzz stores stay small)."""
    ids: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/v1/runs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        ids |= {r["id"] for r in page["data"]}
        cursor = page["next_cursor"]
        if not cursor:
            return ids
