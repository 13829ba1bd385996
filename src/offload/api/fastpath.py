"""The ingest fast path: ``POST /v1/tasks``, ``/v1/tasks/batch`` and ``/e/{event_key}``
(what the SDKs' ``send`` calls) answered in front of the FastAPI stack.

FastAPI's middleware layers, route matching and exit stacks cost more CPU per request
than validating and storing a task (bench/RESULTS.md). :class:`IngestFastPath` sits
outermost and takes only requests the full app would accept the same way: a JSON
content type, a body within the limit, no query string and no cookie, a body that
validates, and a key with the ``ingest`` scope. It then runs the very handlers the
FastAPI routes use (:mod:`offload.api.v1.tasks`) and answers with the same bytes.
Anything else — a bad body, a missing or wrong key, another route — is replayed, body
and all, into the full app, so every error answer and the OpenAPI document are produced
exactly as before.
``/e/{event_key}`` has no body model: its handler (:func:`offload.api.sdk.send_events`)
is called as the route would call it, with the body already read within the limit.
``/w/{webhook_id}`` (provider webhooks, any content type) is taken the same way: its
handler (:func:`offload.api.v1.webhooks.receive`) verifies and answers every case.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offload.api import sdk
from offload.api.identifiers import has_control
from offload.api.v1 import tasks, webhooks
from offload.errors import AuthError

log = logging.getLogger("offload.api")

_Handler = Callable[[Request, Any], Awaitable[Response]]
ROUTES: dict[str, tuple[type[BaseModel], _Handler]] = {
    "/v1/tasks": (tasks.TaskIn, tasks.queue_one),
    "/v1/tasks/batch": (tasks.TaskBatchIn, tasks.queue_many),
}


class IngestFastPath:
    """ASGI middleware; ``app`` is the whole offload stack, ``root`` the FastAPI app
    (for ``request.app`` and its exception handlers)."""

    def __init__(self, app: ASGIApp, root: Any, limit: int) -> None:
        self.app = app
        self.root = root
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        event_key = None
        webhook_id = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope["query_string"]:
            path = scope["path"]
            route = ROUTES.get(path)
            if route is None and path.startswith("/e/"):
                event_key = path[3:]
                if not event_key or "/" in event_key or has_control(event_key):
                    event_key = None
            elif route is None and path.startswith("/w/"):  # provider webhooks: any body
                webhook_id = path[3:]
                if not webhook_id or "/" in webhook_id or has_control(webhook_id):
                    webhook_id = None
        if route is None and event_key is None and webhook_id is None:
            await self.app(scope, receive, send)
            return
        declared = -1
        json_type = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
            elif name == b"content-type":
                json_type = tasks.is_json(value.decode("latin-1"))
            elif name == b"cookie":  # a dashboard session: its checks run in the full app
                declared = -1
                break
        if event_key is not None or webhook_id is not None:
            json_type = True  # the SDK route reads any body as JSON; webhooks take any
        if not json_type or declared <= 0 or declared > self.limit:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # gone before the body came
                await self.app(scope, _replay(chunks, message, receive), send)
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.limit:
                break
        raw = b"".join(chunks)
        if more or size != declared:
            await self.app(scope, _replay(chunks, None, receive, more), send)
            return
        scope["app"] = self.root
        answer: Response
        if webhook_id is not None:
            request = Request(scope, _replay(chunks, None, receive))
            try:
                answer = await webhooks.receive(webhook_id, request)
            except Exception as exc:
                answer = await self._problem(request, exc)
            await answer(scope, receive, send)
            return
        if event_key is not None:
            request = Request(scope, _replay(chunks, None, receive))
            try:
                answer = await sdk.send_events(event_key, request)
            except Exception as exc:
                answer = await self._problem(request, exc)
            await answer(scope, receive, send)
            return
        assert route is not None
        model, handler = route
        try:
            value = model.model_validate_json(raw)
        except (ValueError, RecursionError):  # pydantic's ValidationError included
            await self.app(scope, _replay(chunks, None, receive), send)
            return
        request = Request(scope, receive)
        try:
            await tasks.require_ingest(request)
        except AuthError:
            await self.app(scope, _replay(chunks, None, receive), send)
            return
        try:
            response = await handler(request, value)
        except Exception as exc:
            response = await self._problem(request, exc)
        await response(scope, receive, send)

    async def _problem(self, request: Request, exc: Exception) -> Response:
        """The answer the app's exception handlers give for ``exc`` (or re-raise)."""
        handlers = self.root.exception_handlers
        for kind in type(exc).__mro__:
            handler = handlers.get(kind)
            if handler is not None:
                response: Response = await handler(request, exc)
                return response
        raise exc


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive,
            more: bool = False) -> Receive:
    """A ``receive`` that gives back the body already read, then continues."""
    replayed = False

    async def again() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            if chunks or pending is None:
                return {"type": "http.request", "body": b"".join(chunks), "more_body": more}
        if pending is not None:
            return pending
        return await receive()

    return again
