"""A small client for offload's ``/v1`` API: :class:`Client` and :class:`AsyncClient`.

It imports only httpx, so apps can depend on ``offload`` without the engine::

    from offload import Client

    with Client("http://127.0.0.1:8288", api_key="ofk_…") as client:
        run = client.create_task("https://example.com/hook", body={"n": 1})
        done = client.wait_run(run["id"], timeout=30)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from offload.errors import ClientError

DEFAULT_URL = "http://127.0.0.1:8288"


def _task_body(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"url": url, **{k: v for k, v in options.items() if v is not None}}


def _result(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code >= 400:
        raise ClientError(response.status_code, body)
    return body


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _params(filters: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in filters.items() if v is not None}


class Client:
    """Blocking client. Every method returns the decoded JSON answer or raises ClientError."""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def create_task(self, url: str, **options: Any) -> dict[str, Any]:
        """Queue an HTTP task (``body``, ``callback_url``, ``retries``, ``delay``, …)."""
        result: dict[str, Any] = _result(
            self._http.post("/v1/tasks", json=_task_body(url, options)))
        return result

    def create_tasks(self, tasks: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Queue many HTTP tasks in one request."""
        result: dict[str, Any] = _result(self._http.post("/v1/tasks/batch",
                                                         json={"tasks": list(tasks)}))
        return result

    def send_event(self, name: str, data: Any = None, *, id: str | None = None) -> dict[str, Any]:
        """Send an event; it starts every function it triggers."""
        body = _params({"name": name, "data": data if data is not None else {}, "id": id})
        result: dict[str, Any] = _result(self._http.post("/v1/events", json=body))
        return result

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run with its steps."""
        result: dict[str, Any] = _result(self._http.get(f"/v1/runs/{run_id}"))
        return result

    def list_runs(self, **filters: Any) -> dict[str, Any]:
        """A page of runs: ``{"data": [...], "next_cursor": ...}``."""
        result: dict[str, Any] = _result(self._http.get("/v1/runs", params=_params(filters)))
        return result

    def wait_run(self, run_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """The run once it has ended, or as it is after ``timeout`` seconds."""
        result: dict[str, Any] = _result(self._http.get(
            f"/v1/runs/{run_id}/wait", params={"timeout": timeout},
            timeout=timeout + 10))
        return result

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        """Cancel a run that has not ended."""
        result: dict[str, Any] = _result(self._http.post(f"/v1/runs/{run_id}/cancel"))
        return result

    def replay_run(self, run_id: str) -> dict[str, Any]:
        """Start a new run with the same input, linked to this one."""
        result: dict[str, Any] = _result(self._http.post(f"/v1/runs/{run_id}/replay"))
        return result

    def start_bulk(self, action: str, **filter: Any) -> dict[str, Any]:
        """Start a bulk ``replay`` or ``cancel`` of the runs ``filter`` selects
        (``status`` list, ``function_id``, ``queue``, ``after``, ``before``, ``q``, …)."""
        result: dict[str, Any] = _result(self._http.post(
            "/v1/runs/bulk", json={"action": action, "filter": _params(filter)}))
        return result

    def get_bulk(self, job_id: str) -> dict[str, Any]:
        """A bulk job's progress: ``done`` of ``total``, ``status``."""
        result: dict[str, Any] = _result(self._http.get(f"/v1/runs/bulk/{job_id}"))
        return result


class AsyncClient:
    """The same API as :class:`Client`, for asyncio code."""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None,
                 timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key),
                                       timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def create_task(self, url: str, **options: Any) -> dict[str, Any]:
        """Queue an HTTP task."""
        result: dict[str, Any] = _result(
            await self._http.post("/v1/tasks", json=_task_body(url, options)))
        return result

    async def create_tasks(self, tasks: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Queue many HTTP tasks in one request."""
        result: dict[str, Any] = _result(
            await self._http.post("/v1/tasks/batch", json={"tasks": list(tasks)}))
        return result

    async def send_event(self, name: str, data: Any = None, *,
                         id: str | None = None) -> dict[str, Any]:
        """Send an event."""
        body = _params({"name": name, "data": data if data is not None else {}, "id": id})
        result: dict[str, Any] = _result(await self._http.post("/v1/events", json=body))
        return result

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """A run with its steps."""
        result: dict[str, Any] = _result(await self._http.get(f"/v1/runs/{run_id}"))
        return result

    async def list_runs(self, **filters: Any) -> dict[str, Any]:
        """A page of runs."""
        result: dict[str, Any] = _result(
            await self._http.get("/v1/runs", params=_params(filters)))
        return result

    async def wait_run(self, run_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """The run once it has ended, or as it is after ``timeout`` seconds."""
        result: dict[str, Any] = _result(await self._http.get(
            f"/v1/runs/{run_id}/wait", params={"timeout": timeout}, timeout=timeout + 10))
        return result

    async def cancel_run(self, run_id: str) -> dict[str, Any]:
        """Cancel a run that has not ended."""
        result: dict[str, Any] = _result(await self._http.post(f"/v1/runs/{run_id}/cancel"))
        return result

    async def replay_run(self, run_id: str) -> dict[str, Any]:
        """Start a new run with the same input."""
        result: dict[str, Any] = _result(await self._http.post(f"/v1/runs/{run_id}/replay"))
        return result

    async def start_bulk(self, action: str, **filter: Any) -> dict[str, Any]:
        """Start a bulk ``replay`` or ``cancel`` of the runs ``filter`` selects."""
        result: dict[str, Any] = _result(await self._http.post(
            "/v1/runs/bulk", json={"action": action, "filter": _params(filter)}))
        return result

    async def get_bulk(self, job_id: str) -> dict[str, Any]:
        """A bulk job's progress."""
        result: dict[str, Any] = _result(await self._http.get(f"/v1/runs/bulk/{job_id}"))
        return result
