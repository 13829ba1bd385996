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


def held_by_pause(api: httpx.Client, queue: str, n: int, timeout: float = 30) -> None:
    """Wait until ``n`` items of ``queue`` are held by a pause.

    A RUN item queued under a pause is held when an engine's claim first meets it
    (:func:`offload.store.ops.hold_paused`): once ``held`` counts it, the engine has seen
    the item and given it back instead of starting it. This is the signal that the pause
    was enforced, not a guess at how long an engine might take to start it.
    """
    from tests.support.poll import eventually

    def state() -> dict[str, Any]:
        body: dict[str, Any] = api.get(f"/v1/queues/{queue}").json()
        return body

    eventually(lambda: state()["held"] == n, timeout=timeout, interval=0.05,
               what=f"{n} items of queue {queue} held by a pause", detail=state)
