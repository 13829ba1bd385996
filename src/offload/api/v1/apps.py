"""``/v1/apps``: register an app by URL, resync it, list apps.

Syncing is :class:`offload.engine.apps.AppSync`; failures get a clear 4xx/502 body
naming ``body.url`` and are recorded on the app (``sync_error``) when it is known.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.responses import JSONResponse

from offload.api.auth import require
from offload.api.problems import problem
from offload.api.shapes import app_json
from offload.api.v1.functions import describe
from offload.engine import Engine
from offload.engine.apps import AppSyncError
from offload.engine.pause import pauses, with_pause
from offload.errors import NotFoundError, ValidationError
from offload.models import App
from offload.outbound.ssrf import validate_url

router = APIRouter(prefix="/v1/apps", tags=["apps"], dependencies=[Depends(require("admin"))])


class AppIn(BaseModel):
    """An app to register: the URL its Inngest SDK serves at (``/api/inngest``)."""

    model_config = ConfigDict(extra="forbid")

    url: StrictStr = Field(description="The app's serve URL, e.g. "
                           "http://localhost:8000/api/inngest.", max_length=2048)


async def _app_body(request: Request, app: App) -> dict[str, Any]:
    store = request.app.state.engine.store
    functions = await store.function_list(app_id=app.id)
    paused = await pauses(store, "function")
    return {**app_json(app), "functions": [with_pause(describe(f), paused) for f in functions]}


async def _answer(request: Request, sync: Awaitable[App]) -> JSONResponse:
    """The synced app, or the sync's failure as a problem naming ``body.url``."""
    try:
        app = await sync
    except AppSyncError as exc:
        return problem(exc.status, exc.code, exc.title,
                       [{"field": "body.url", "code": exc.code, "message": exc.message}])
    return JSONResponse(await _app_body(request, app))


@router.post("")
async def register_app(body: AppIn, request: Request) -> JSONResponse:
    """Register (or resync) the app served at ``url``."""
    try:
        validate_url(body.url)
    except ValidationError as exc:
        raise ValidationError("body.url", exc.message, exc.code) from None
    engine: Engine = request.app.state.engine
    return await _answer(request, engine.apps.sync(body.url))


@router.post("/{app_id}/sync")
async def resync_app(app_id: str, request: Request) -> JSONResponse:
    """Sync a known app again from its URL."""
    engine: Engine = request.app.state.engine
    return await _answer(request, engine.apps.resync(app_id))


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
