"""A small client for offload's ``/v1`` API: :class:`Client` and :class:`AsyncClient`.

It needs only the standard library, so apps can depend on ``offload`` without the
engine::

    from offload import Client

    with Client("http://127.0.0.1:8288", api_key="ofk_…") as client:
        run = client.create_task("https://example.com/hook", body={"n": 1})
        done = client.wait_run(run["id"], timeout=30)

Producers that fire many tasks can let the client batch them: ``client.enqueue(url,
…)`` buffers the task for at most ``batch_linger`` seconds (2 ms) or ``batch_size``
tasks and sends the buffer as one ``POST /v1/tasks/batch``; it returns a future of
that task's answer (or its own error). ``close()`` and leaving the ``with`` block
send what is buffered and wait for it.

Every method returns the decoded JSON answer or raises :class:`~offload.errors.ClientError`
for a non-2xx answer; when the engine cannot be reached it raises ``OSError``
(``ConnectionError``, ``TimeoutError``) after ``retries`` retries. A request is
repeated after it may have reached the engine only when that is harmless: reads, and
tasks or events that carry an ``idempotency_key`` or ``id``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from offload.client_http import (
    AsyncTransport,
    AsyncTransportProtocol,
    Endpoint,
    SyncTransport,
    SyncTransportProtocol,
)
from offload.errors import ClientError

DEFAULT_URL = "http://127.0.0.1:8288"
BATCH_SIZE = 500
"""Tasks per batch request of :meth:`Client.enqueue` (the engine takes up to 1000)."""
BATCH_LINGER = 0.002
"""Seconds a task waits in :meth:`Client.enqueue`'s buffer for others to join it."""
RETRIES = 3


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      default=_default).encode()


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data.decode("utf-8", "replace")


def _result(status: int, data: bytes) -> Any:
    body = _decode(data)
    if status >= 400:
        raise ClientError(status, body)
    return body


def _task_body(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"url": url, **{k: v for k, v in options.items() if v is not None}}


def _params(filters: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in filters.items() if v is not None}


def _event_body(name: str, data: Any, id: str | None) -> dict[str, Any]:
    return _params({"name": name, "data": data if data is not None else {}, "id": id})


def _keyed(tasks: Sequence[Mapping[str, Any]]) -> bool:
    """True when every task carries an idempotency key (a repeat is then harmless)."""
    return all(t.get("idempotency_key") for t in tasks)


_TASK_FIELD = re.compile(r"^body\.tasks\[(\d+)\](.*)$")


def _settle_batch(pending: list[tuple[dict[str, Any], Any]], status: int, body: Any,
                  resolve: Callable[[Any, Any], None],
                  reject: Callable[[Any, BaseException], None]
                  ) -> list[tuple[dict[str, Any], Any]]:
    """Hand each task of a batch answer its result; the tasks to send again.

    A batch is all or nothing, so a 422 naming some tasks fails those (each with a
    problem body as ``create_task`` would have given) and returns the rest to resend.
    """
    if status < 300 and isinstance(body, dict) and len(body.get("data", ())) == len(pending):
        for (_, fut), answer in zip(pending, body["data"], strict=True):
            resolve(fut, answer)
        return []
    bad: dict[int, list[dict[str, Any]]] = {}
    errors = body.get("errors") if status == 422 and isinstance(body, dict) else None
    for error in errors or ():
        match = _TASK_FIELD.match(str(error.get("field", "")))
        if not match or int(match[1]) >= len(pending):
            bad.clear()  # not only about single tasks: the whole batch failed
            break
        bad.setdefault(int(match[1]), []).append(dict(error, field=f"body{match[2]}"))
    if not bad:
        for _, fut in pending:
            reject(fut, ClientError(status, body))
        return []
    rest = []
    for index, item in enumerate(pending):
        if index in bad:
            reject(item[1], ClientError(status, dict(body, errors=bad[index])))
        else:
            rest.append(item)
    return rest


def _set_result(fut: Any, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: Any, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class Client:
    """Blocking client; safe to share between threads."""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None,
                 timeout: float = 30.0, transport: Any = None, retries: int = RETRIES,
                 batch_size: int = BATCH_SIZE, batch_linger: float = BATCH_LINGER) -> None:
        """``transport``, if given, is an ``httpx.BaseTransport`` to send through (tests)."""
        endpoint = Endpoint(base_url, api_key)
        self._endpoint = endpoint
        self._timeout = timeout
        self._http: SyncTransportProtocol = (
            SyncTransport(endpoint, timeout=timeout, retries=retries) if transport is None
            else _HttpxSync(endpoint, transport))
        self._batcher = _SyncBatcher(self._send_batch, batch_size, batch_linger)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Send what :meth:`enqueue` buffered, wait for it, and close the connections."""
        self._batcher.close()
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None, *,
              params: Mapping[str, Any] | None = None, timeout: float | None = None,
              safe: bool = False) -> Any:
        data = None if body is None else _dumps(body)
        status, answer = self._http.request(
            method, self._endpoint.target(path, params), data,
            timeout=timeout or self._timeout, safe=safe or method == "GET")
        return _result(status, answer)

    def create_task(self, url: str, **options: Any) -> dict[str, Any]:
        """Queue an HTTP task (``body``, ``callback_url``, ``retries``, ``delay``, …)."""
        result: dict[str, Any] = self._call("POST", "/v1/tasks", _task_body(url, options),
                                            safe=bool(options.get("idempotency_key")))
        return result

    def create_tasks(self, tasks: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Queue many HTTP tasks in one request (all or none)."""
        tasks = list(tasks)
        result: dict[str, Any] = self._call("POST", "/v1/tasks/batch", {"tasks": tasks},
                                            safe=_keyed(tasks))
        return result

    def enqueue(self, url: str, **options: Any) -> concurrent.futures.Future[dict[str, Any]]:
        """Queue an HTTP task through the batching buffer; a future of its answer.

        The future raises this task's own :class:`ClientError` if the engine refused
        it (the other tasks of its batch are still queued).
        """
        return self._batcher.add(_task_body(url, options))

    def flush(self) -> None:
        """Send what :meth:`enqueue` buffered and wait until every enqueued task is settled."""
        self._batcher.flush()

    def _send_batch(self, pending: list[tuple[dict[str, Any], Any]]) -> None:
        while pending:
            tasks = [task for task, _ in pending]
            try:
                status, answer = self._http.request(
                    "POST", self._endpoint.target("/v1/tasks/batch"),
                    _dumps({"tasks": tasks}), timeout=self._timeout, safe=_keyed(tasks))
            except Exception as exc:  # every task of the batch gets the transport error
                for _, fut in pending:
                    _set_exception(fut, exc)
                return
            pending = _settle_batch(pending, status, _decode(answer), _set_result,
                                    _set_exception)

    def send_event(self, name: str, data: Any = None, *, id: str | None = None) -> dict[str, Any]:
        """Send an event; it starts every function it triggers."""
        result: dict[str, Any] = self._call("POST", "/v1/events", _event_body(name, data, id),
                                            safe=id is not None)
        return result

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run with its steps."""
        result: dict[str, Any] = self._call("GET", f"/v1/runs/{run_id}")
        return result

    def list_runs(self, **filters: Any) -> dict[str, Any]:
        """A page of runs: ``{"data": [...], "next_cursor": ...}``."""
        result: dict[str, Any] = self._call("GET", "/v1/runs", params=_params(filters))
        return result

    def wait_run(self, run_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """The run once it has ended, or as it is after ``timeout`` seconds."""
        result: dict[str, Any] = self._call("GET", f"/v1/runs/{run_id}/wait",
                                            params={"timeout": timeout},
                                            timeout=timeout + 10)
        return result

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        """Cancel a run that has not ended."""
        result: dict[str, Any] = self._call("POST", f"/v1/runs/{run_id}/cancel")
        return result

    def replay_run(self, run_id: str) -> dict[str, Any]:
        """Start a new run with the same input, linked to this one."""
        result: dict[str, Any] = self._call("POST", f"/v1/runs/{run_id}/replay")
        return result

    def start_bulk(self, action: str, **filter: Any) -> dict[str, Any]:
        """Start a bulk ``replay`` or ``cancel`` of the runs ``filter`` selects
        (``status`` list, ``function_id``, ``queue``, ``after``, ``before``, ``q``, …)."""
        result: dict[str, Any] = self._call(
            "POST", "/v1/runs/bulk", {"action": action, "filter": _params(filter)})
        return result

    def get_bulk(self, job_id: str) -> dict[str, Any]:
        """A bulk job's progress: ``done`` of ``total``, ``status``."""
        result: dict[str, Any] = self._call("GET", f"/v1/runs/bulk/{job_id}")
        return result


class AsyncClient:
    """The same API as :class:`Client`, for asyncio code (use it from one event loop)."""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None,
                 timeout: float = 30.0, transport: Any = None, retries: int = RETRIES,
                 max_connections: int = 100, batch_size: int = BATCH_SIZE,
                 batch_linger: float = BATCH_LINGER) -> None:
        """``transport``, if given, is an ``httpx.AsyncBaseTransport`` to send through."""
        endpoint = Endpoint(base_url, api_key)
        self._endpoint = endpoint
        self._timeout = timeout
        self._http: AsyncTransportProtocol = (
            AsyncTransport(endpoint, timeout=timeout, retries=retries,
                           max_connections=max_connections) if transport is None
            else _HttpxAsync(endpoint, transport))
        self._batch_size = max(1, min(batch_size, 1000))
        self._linger = batch_linger
        self._buffer: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Send what :meth:`enqueue` buffered, wait for it, and close the connections."""
        await self.flush()
        await self._http.close()

    async def _call(self, method: str, path: str, body: Any = None, *,
                    params: Mapping[str, Any] | None = None, timeout: float | None = None,
                    safe: bool = False) -> Any:
        data = None if body is None else _dumps(body)
        status, answer = await self._http.request(
            method, self._endpoint.target(path, params), data,
            timeout=timeout or self._timeout, safe=safe or method == "GET")
        return _result(status, answer)

    async def create_task(self, url: str, **options: Any) -> dict[str, Any]:
        """Queue an HTTP task."""
        result: dict[str, Any] = await self._call(
            "POST", "/v1/tasks", _task_body(url, options),
            safe=bool(options.get("idempotency_key")))
        return result

    async def create_tasks(self, tasks: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Queue many HTTP tasks in one request (all or none)."""
        tasks = list(tasks)
        result: dict[str, Any] = await self._call("POST", "/v1/tasks/batch", {"tasks": tasks},
                                                  safe=_keyed(tasks))
        return result

    def enqueue(self, url: str, **options: Any) -> asyncio.Future[dict[str, Any]]:
        """Queue an HTTP task through the batching buffer; a future of its answer.

        Call it from the event loop; await the future for this task's answer or error.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._buffer.append((_task_body(url, options), fut))
        if len(self._buffer) >= self._batch_size:
            self._kick()
        elif self._timer is None:
            self._timer = loop.call_later(self._linger, self._kick)
        return fut

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        pending, self._buffer = self._buffer, []
        task = asyncio.get_running_loop().create_task(self._send_batch(pending))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def flush(self) -> None:
        """Send what :meth:`enqueue` buffered and wait until every enqueued task is settled."""
        self._kick()
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _send_batch(self, pending: list[tuple[dict[str, Any], Any]]) -> None:
        while pending:
            tasks = [task for task, _ in pending]
            try:
                status, answer = await self._http.request(
                    "POST", self._endpoint.target("/v1/tasks/batch"),
                    _dumps({"tasks": tasks}), timeout=self._timeout, safe=_keyed(tasks))
            except Exception as exc:
                for _, fut in pending:
                    _set_exception(fut, exc)
                return
            pending = _settle_batch(pending, status, _decode(answer), _set_result,
                                    _set_exception)

    async def send_event(self, name: str, data: Any = None, *,
                         id: str | None = None) -> dict[str, Any]:
        """Send an event."""
        result: dict[str, Any] = await self._call(
            "POST", "/v1/events", _event_body(name, data, id), safe=id is not None)
        return result

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """A run with its steps."""
        result: dict[str, Any] = await self._call("GET", f"/v1/runs/{run_id}")
        return result

    async def list_runs(self, **filters: Any) -> dict[str, Any]:
        """A page of runs."""
        result: dict[str, Any] = await self._call("GET", "/v1/runs", params=_params(filters))
        return result

    async def wait_run(self, run_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """The run once it has ended, or as it is after ``timeout`` seconds."""
        result: dict[str, Any] = await self._call(
            "GET", f"/v1/runs/{run_id}/wait", params={"timeout": timeout},
            timeout=timeout + 10)
        return result

    async def cancel_run(self, run_id: str) -> dict[str, Any]:
        """Cancel a run that has not ended."""
        result: dict[str, Any] = await self._call("POST", f"/v1/runs/{run_id}/cancel")
        return result

    async def replay_run(self, run_id: str) -> dict[str, Any]:
        """Start a new run with the same input."""
        result: dict[str, Any] = await self._call("POST", f"/v1/runs/{run_id}/replay")
        return result

    async def start_bulk(self, action: str, **filter: Any) -> dict[str, Any]:
        """Start a bulk ``replay`` or ``cancel`` of the runs ``filter`` selects."""
        result: dict[str, Any] = await self._call(
            "POST", "/v1/runs/bulk", {"action": action, "filter": _params(filter)})
        return result

    async def get_bulk(self, job_id: str) -> dict[str, Any]:
        """A bulk job's progress."""
        result: dict[str, Any] = await self._call("GET", f"/v1/runs/bulk/{job_id}")
        return result


class _SyncBatcher:
    """The buffer behind :meth:`Client.enqueue`: a daemon thread sends it as batches."""

    def __init__(self, send: Callable[[list[tuple[dict[str, Any], Any]]], None],
                 size: int, linger: float) -> None:
        self._send = send
        self._size = max(1, min(size, 1000))
        self._linger = linger
        self._cond = threading.Condition()
        self._buffer: list[tuple[dict[str, Any], concurrent.futures.Future[Any]]] = []
        self._first_at = 0.0
        self._unsettled: set[concurrent.futures.Future[Any]] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, task: dict[str, Any]) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the client is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="offload-enqueue",
                                                daemon=True)
                self._thread.start()
                _open_batchers.add(self)
            if not self._buffer:
                self._first_at = time.monotonic()
            self._buffer.append((task, fut))
            self._unsettled.add(fut)
            fut.add_done_callback(self._settled)
            if len(self._buffer) == 1 or len(self._buffer) >= self._size:
                self._cond.notify()
        return fut

    def _settled(self, fut: concurrent.futures.Future[Any]) -> None:
        with self._cond:
            self._unsettled.discard(fut)

    def _take(self) -> list[tuple[dict[str, Any], Any]]:
        taken, self._buffer = self._buffer[:self._size], self._buffer[self._size:]
        self._first_at = time.monotonic()
        return taken

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._buffer and not self._closed:
                    self._cond.wait()
                if not self._buffer:
                    return
                while len(self._buffer) < self._size and not self._closed:
                    left = self._first_at + self._linger - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                taken = self._take()
            self._send(taken)

    def flush(self) -> None:
        while True:
            with self._cond:
                taken = self._take() if self._buffer else []
                unsettled = list(self._unsettled)
            if taken:
                self._send(taken)
            elif not unsettled:
                return
            else:
                concurrent.futures.wait(unsettled)

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        _open_batchers.discard(self)


_open_batchers: weakref.WeakSet[_SyncBatcher] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Tasks still buffered by an unclosed :class:`Client` are sent before exit."""
    for batcher in list(_open_batchers):
        batcher.close()


class _HttpxSync:
    """Requests through a caller-supplied httpx transport (kept for tests and mocks)."""

    def __init__(self, endpoint: Endpoint, transport: Any) -> None:
        import httpx

        self._endpoint = endpoint
        self._client = httpx.Client(transport=transport, headers=endpoint.headers,
                                    base_url=f"{'https' if endpoint.tls else 'http'}://"
                                             f"{endpoint.host_header}")

    def request(self, method: str, target: str, body: bytes | None, *, timeout: float,
                safe: bool) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = self._client.request(method, target, content=body, headers=headers,
                                        timeout=timeout)
        return response.status_code, response.content

    def close(self) -> None:
        self._client.close()


class _HttpxAsync:
    """Async requests through a caller-supplied httpx transport."""

    def __init__(self, endpoint: Endpoint, transport: Any) -> None:
        import httpx

        self._client = httpx.AsyncClient(transport=transport, headers=endpoint.headers,
                                         base_url=f"{'https' if endpoint.tls else 'http'}://"
                                                  f"{endpoint.host_header}")

    async def request(self, method: str, target: str, body: bytes | None, *, timeout: float,
                      safe: bool) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = await self._client.request(method, target, content=body, headers=headers,
                                              timeout=timeout)
        return response.status_code, response.content

    async def close(self) -> None:
        await self._client.aclose()
