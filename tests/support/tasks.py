"""Small helpers for tests that submit HTTP tasks through the API."""

from __future__ import annotations

from typing import Any

import httpx


def submit(api: httpx.Client, expect: int = 202, **task: Any) -> dict[str, Any]:
    """POST one task and return the answer, asserting its status."""
    response = api.post("/v1/tasks", json=task)
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body

