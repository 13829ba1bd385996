"""``/v1/apps``: register an app by URL, resync it, list apps.

Registering sends ``PUT <app url>`` with ``X-Inngest-Server-Kind`` (and, with a
signing key, a signed body); the SDK answers by calling ``POST /fn/register``
on this server, and relays that answer. Failures get a clear 4xx/502 body and
are recorded on the app (``sync_error``) when the app is known.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.responses import JSONResponse

from offload.api.auth import require
from offload.api.problems import problem
from offload.api.shapes import app_json
from offload.api.v1.functions import describe
from offload.clock import now
from offload.engine.executor import server_kind
from offload.errors import NotFoundError, OutboundError, ValidationError
from offload.models import App
from offload.outbound.http import send
from offload.outbound.ssrf import validate_url
from offload.protocol.canonical import canonical_json
from offload.protocol.signing import sign_request

router = APIRouter(prefix="/v1/apps", tags=["apps"], dependencies=[Depends(require("admin"))])


class AppIn(BaseModel):
    """An app to register: the URL its Inngest SDK serves at (``/api/inngest``)."""

    model_config = ConfigDict(extra="forbid")

    url: StrictStr = Field(description="The app's serve URL, e.g. "
                           "http://localhost:8000/api/inngest.", max_length=2048)


def _base(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query="", fragment="")).rstrip("/")


async def _find_app(request: Request, url: str, app_id: str | None) -> App | None:
    store = request.app.state.engine.store
    if app_id:
        found: App | None = await store.app_get(app_id=app_id)
        if found is not None:
            return found
    apps: list[App] = await store.app_list()
    for app in apps:
        if _base(app.url) == _base(url):
            return app
    return None


async def _app_body(request: Request, app: App) -> dict[str, Any]:
    functions = await request.app.state.engine.store.function_list(app_id=app.id)
    return {**app_json(app), "functions": [describe(f) for f in functions]}


async def sync_url(request: Request, url: str) -> JSONResponse:
    """PUT the app at ``url`` so it registers; answer with the app or a problem."""
    engine = request.app.state.engine
    settings = engine.settings
    assert engine.client is not None
    kind = server_kind(settings)
    content = canonical_json({"url": url})
    headers = {"Content-Type": "application/json", "X-Inngest-Server-Kind": kind}
    if settings.signing_key:
        headers["X-Inngest-Signature"] = sign_request(content, settings.signing_key, now())
    try:
        answer = await send(engine.client, "PUT", url, headers=headers, content=content,
                            timeout_s=settings.call_timeout_s)
    except OutboundError as exc:
        return await _failed(request, url, None, 502, "app_unreachable",
                             f"cannot reach the app at {_base(url)}: {exc}")
    try:
        body: Any = orjson.loads(answer.body) if answer.body.strip() else {}
    except orjson.JSONDecodeError:
        body = {"error": answer.body[:300].decode(errors="replace")}
    body = body if isinstance(body, dict) else {}
    if answer.status >= 300:
        message = str(body.get("error") or body.get("message") or f"HTTP {answer.status}")
        code = str(body.get("code") or "")
        if code == "server_kind_mismatch" or "server kind" in message.lower():
            return await _failed(request, url, None, 400, "server_kind_mismatch",
                                 f"the app runs in the other mode than this {kind!r} server: "
                                 f"{message}. Use INNGEST_DEV=<offload url> with `offload "
                                 "dev`, or the same INNGEST_SIGNING_KEY on both sides")
        if answer.status in (401, 403):
            return await _failed(request, url, None, 502, "app_rejected_signature",
                                 f"the app refused offload's request ({answer.status}: "
                                 f"{message}); check both sides use the same signing key")
        return await _failed(request, url, None, 502, "sync_failed",
                             f"the app answered {answer.status} to the sync: {message}")
    if "x-inngest-sdk" not in answer.headers and "x-inngest-sync-kind" not in answer.headers:
        return await _failed(request, url, None, 502, "not_an_inngest_app",
                             f"{_base(url)} answered, but not as an Inngest SDK serve "
                             "endpoint (no X-Inngest-SDK header)")
    app = await _find_app(request, url, body.get("app_id"))
    if app is None:
        return problem(502, "sync_failed", "The app answered but never registered",
                       [{"field": "body.url", "code": "sync_failed",
                         "message": "the app did not call POST /fn/register on this server; "
                                    "check its INNGEST_BASE_URL / INNGEST_DEV points here"}])
    return JSONResponse(await _app_body(request, app))


async def _failed(request: Request, url: str, app: App | None, status: int, code: str,
                  message: str) -> JSONResponse:
    app = app or await _find_app(request, url, None)
    if app is not None:
        await request.app.state.engine.store.app_set_sync_error(app_id=app.id, error=message,
                                                                at=now())
    return problem(status, code, "The app could not be synced",
                   [{"field": "body.url", "code": code, "message": message}])


@router.post("")
async def register_app(body: AppIn, request: Request) -> JSONResponse:
    """Register (or resync) the app served at ``url``."""
    try:
        validate_url(body.url)
    except ValidationError as exc:
        raise ValidationError("body.url", exc.message, exc.code) from None
    return await sync_url(request, body.url)


@router.post("/{app_id}/sync")
async def resync_app(app_id: str, request: Request) -> JSONResponse:
    """Sync a known app again from its URL."""
    app = await request.app.state.engine.store.app_get(app_id=app_id)
    if app is None:
        raise NotFoundError(f"no app with id {app_id[:200]!r}")
    return await sync_url(request, app.url)


@router.get("")
async def list_apps(request: Request) -> dict[str, Any]:
    """Every app with its functions."""
    apps = await request.app.state.engine.store.app_list()
    return {"data": [await _app_body(request, a) for a in apps], "next_cursor": None}


@router.get("/{app_id}")
async def get_app(app_id: str, request: Request) -> dict[str, Any]:
    """One app with its functions."""
    app = await request.app.state.engine.store.app_get(app_id=app_id)
    if app is None:
        raise NotFoundError(f"no app with id {app_id[:200]!r}")
    return await _app_body(request, app)
