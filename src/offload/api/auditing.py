"""Audit every operator action taken through the API or the dashboard.

:class:`AuditLog` is an ASGI middleware with one table of the operator routes
(:data:`ROUTES`). For a matching request that succeeded it writes one audit entry
(:func:`offload.engine.audit.record_audit`) *before* the response is sent, so an
action the caller saw succeed is already in the log. Other requests (task and
event ingest, reads) pass straight through, untouched.

The actor is the API key that authenticated the request (``request.state.actor``,
set by :mod:`offload.api.auth`), the dashboard session's user, or ``open`` when
the engine runs without keys. Each audited request gets a request id: the caller's
``X-Request-Id`` when it is a plain token, else a new one; it is echoed back in the
response's ``X-Request-Id`` header.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offload.engine.audit import record_audit
from offload.errors import StoreError
from offload.ids import new_id
from offload.store.ops import Actor

log = logging.getLogger("offload.audit")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_MAX_BODY = 256 * 1024
_ID = r"([^/]{1,512})"


@dataclass(frozen=True, slots=True)
class Route:
    """One audited operator route. ``target`` names where the target id comes from:
    the path (``path``), the JSON answer's ``id`` (``body``, or ``body.<field>``) or the
    redirect (``location``).
    ``related`` likewise for a second object (the new run of a replay)."""

    methods: tuple[str, ...]
    pattern: re.Pattern[str]
    action: str
    target_kind: str | None
    target: str = "path"
    related: str | None = None
    dashboard: bool = False


def _r(methods: str, path: str, action: str, kind: str | None, target: str = "path",
       related: str | None = None) -> Route:
    return Route(tuple(methods.split(",")), re.compile(f"^{path}$"), action, kind, target,
                 related, dashboard=not path.startswith(("/v1/", "/fn/")))


ROUTES: tuple[Route, ...] = (
    # the API
    _r("POST", "/v1/runs/bulk", "bulk.start", "bulk_job", target="body"),
    _r("POST", f"/v1/runs/bulk/{_ID}/stop", "bulk.stop", "bulk_job"),
    _r("POST", f"/v1/runs/{_ID}/cancel", "run.cancel", "run"),
    _r("POST", f"/v1/runs/{_ID}/replay", "run.replay", "run", related="body"),
    _r("POST", f"/v1/runs/{_ID}/rerun", "run.rerun", "run", related="body"),
    _r("POST", "/v1/apps", "app.register", "app", target="body"),
    _r("POST", f"/v1/apps/{_ID}/(?:sync|resync)", "app.sync", "app"),
    _r("DELETE", f"/v1/apps/{_ID}", "app.delete", "app"),
    _r("POST", "/fn/register", "app.sync", "app", target="body.app_id"),  # the SDK's sync
    _r("POST", f"/v1/webhooks/{_ID}/test", "webhook.test", "webhook"),
    _r("POST", f"/v1/functions/{_ID}/pause", "function.pause", "function"),
    _r("POST", f"/v1/functions/{_ID}/resume", "function.resume", "function"),
    _r("POST", f"/v1/queues/{_ID}/pause", "queue.pause", "queue"),
    _r("POST", f"/v1/queues/{_ID}/resume", "queue.resume", "queue"),
    _r("POST", "/v1/alerts", "alert.create", "alert", target="body"),
    _r("PUT,PATCH", f"/v1/alerts/{_ID}", "alert.update", "alert"),
    _r("DELETE", f"/v1/alerts/{_ID}", "alert.delete", "alert"),
    _r("PUT", f"/v1/secrets/{_ID}", "secret.put", "secret"),
    _r("DELETE", f"/v1/secrets/{_ID}", "secret.delete", "secret"),
    _r("POST", "/v1/webhooks", "webhook.create", "webhook", target="body"),
    _r("PUT,PATCH", f"/v1/webhooks/{_ID}", "webhook.update", "webhook"),
    _r("DELETE", f"/v1/webhooks/{_ID}", "webhook.delete", "webhook"),
    _r("POST", f"/v1/webhooks/{_ID}/rotate", "webhook.rotate", "webhook"),
    _r("POST", "/v1/keys", "key.create", "api_key", target="body"),
    _r("DELETE", f"/v1/keys/{_ID}", "key.revoke", "api_key"),
    _r("POST", f"/v1/keys/{_ID}/revoke", "key.revoke", "api_key"),
    # the dashboard (forms answer with a redirect)
    _r("POST", "/login", "dashboard.login", None, target="none"),
    _r("POST", "/logout", "dashboard.logout", None, target="none"),
    _r("POST", "/runs/bulk", "bulk.start", "bulk_job", target="location"),
    _r("POST", f"/bulk/{_ID}/stop", "bulk.stop", "bulk_job"),
    _r("POST", f"/runs/{_ID}/cancel", "run.cancel", "run"),
    _r("POST", f"/runs/{_ID}/replay", "run.replay", "run", related="location"),
    _r("POST", f"/runs/{_ID}/rerun", "run.rerun", "run", related="location"),
    _r("POST", f"/apps/{_ID}/resync", "app.sync", "app"),
    _r("POST", f"/functions/{_ID}/pause", "function.pause", "function"),
    _r("POST", f"/functions/{_ID}/resume", "function.resume", "function"),
    _r("POST", f"/queues/{_ID}/pause", "queue.pause", "queue"),
    _r("POST", f"/queues/{_ID}/resume", "queue.resume", "queue"),
    _r("POST", f"/webhooks/{_ID}/test", "webhook.test", "webhook"),
    _r("POST", f"/functions/{_ID}/invoke", "function.invoke", "function",
       related="location"),
)
_PREFIXES = ("/v1/", "/fn/register", "/login", "/logout", "/runs/", "/bulk/", "/apps/",
             "/functions/", "/queues/", "/webhooks/")
_NEVER = ("/v1/tasks", "/v1/events")
"""Ingest: never operator actions (and the hot path: no regex matching)."""
_NOTHING_DONE = ("notice=already_ended", "notice=rerun_failed", "notice=resync_unavailable")
"""Dashboard redirects that mean the action did nothing (not audited)."""


def match(method: str, path: str) -> tuple[Route, str | None] | None:
    """The audited route for a request, with the id taken from its path."""
    if method == "GET" or not path.startswith(_PREFIXES) or path.startswith(_NEVER):
        return None
    for route in ROUTES:
        if method in route.methods and (m := route.pattern.match(path)):
            return route, (m.group(1) if m.groups() else None)
    return None


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-Id`` if it is a plain token, else a new id."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
    return new_id()


def actor_of(scope: Scope, route: Route) -> Actor:
    """Who made the request: the API key, the dashboard user, or ``open``."""
    state: dict[str, Any] = scope.get("state") or {}
    actor = state.get("actor")
    if isinstance(actor, Actor):
        return actor
    session = state.get("dashboard_session")
    if route.dashboard or session is not None:
        user = getattr(session, "user", None)
        sid = getattr(session, "sid", None)
        return Actor("dashboard", sid[:8] if isinstance(sid, str) else None,
                     user if isinstance(user, str) else "anonymous")
    if route.pattern.pattern == "^/fn/register$":
        return Actor("sdk", None, "app (signed register)")
    return Actor("open", None, "open access (no API key)")


def _from(where: str | None, body: bytes, location: str | None) -> str | None:
    if where is not None and where.startswith("body") and body:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        key = where.partition(".")[2] or "id"
        found = value.get(key) if isinstance(value, dict) else None
        return found if isinstance(found, str) else None
    if where == "location" and location:
        path = location.split("?", 1)[0].rstrip("/")
        return path.rsplit("/", 1)[-1] or None
    return None


def outcome_of(route: Route, status: int, location: str | None) -> str | None:
    """``ok``, ``failed`` (logins only) or None when nothing is to be recorded."""
    if route.action == "dashboard.login":
        return "ok" if status in (302, 303) else "failed"
    if status >= 400:
        return None
    if route.dashboard and location and any(n in location for n in _NOTHING_DONE):
        return None
    if route.dashboard and location and "notice=resync_failed" in location:
        return "failed"
    return "ok"


class AuditLog:
    """The middleware; ``store_of(scope)`` gives the engine's store."""

    def __init__(self, app: ASGIApp, store_of: Callable[[Scope], Any]) -> None:
        self.app = app
        self.store_of = store_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = match(scope["method"], scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        route, path_id = found
        request_id = request_id_of(scope.get("headers") or [])
        scope.setdefault("state", {})
        held: list[Message] = []
        body = bytearray()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                held.append(message)
                return
            if message["type"] != "http.response.body" or not held:
                await send(message)
                return
            chunk = message.get("body", b"")
            if len(body) < _MAX_BODY:
                body.extend(chunk[:_MAX_BODY - len(body)])
            held.append(message)
            if message.get("more_body", False):
                return
            start = held[0]
            await self._record(scope, route, path_id, request_id, start, bytes(body))
            start["headers"] = [*start.get("headers", []),
                                (b"x-request-id", request_id.encode())]
            for held_message in held:
                await send(held_message)
            held.clear()

        await self.app(scope, receive, capture)
        for message in held:  # an app that never finished its body
            await send(message)

    async def _record(self, scope: Scope, route: Route, path_id: str | None,
                      request_id: str, start: Message, body: bytes) -> None:
        status = int(start.get("status", 500))
        location = None
        for name, value in start.get("headers", []):
            if name.lower() == b"location":
                location = value.decode("latin-1")
        outcome = outcome_of(route, status, location)
        if outcome is None:
            return
        target = path_id if route.target == "path" else _from(route.target, body, location)
        details: dict[str, Any] = {"status": status}
        if route.action == "dashboard.login":
            client = scope.get("client")
            details["client"] = client[0] if client else None
        try:
            await record_audit(
                self.store_of(scope), actor=actor_of(scope, route), action=route.action,
                target_kind=route.target_kind, target_id=target,
                related_id=_from(route.related, body, location), request_id=request_id,
                outcome=outcome, details=details)
        except StoreError as exc:
            log.warning("audit entry not written", extra={"action": route.action,
                                                          "error": str(exc)})


async def audit_request(request: Any, *, action: str, target_kind: str | None = None,
                        target_id: str | None = None, related_id: str | None = None,
                        outcome: str = "ok", details: dict[str, Any] | None = None) -> None:
    """Record an action a handler took that :data:`ROUTES` does not cover, with the
    request's actor (API key or dashboard user) and request id."""
    scope = request.scope
    route = Route(("POST",), re.compile(""), action, target_kind,
                  dashboard=not scope.get("path", "").startswith("/v1/"))
    await record_audit(request.app.state.engine.store, actor=actor_of(scope, route),
                       action=action, target_kind=target_kind, target_id=target_id,
                       related_id=related_id,
                       request_id=request_id_of(scope.get("headers") or []),
                       outcome=outcome, details=details)
