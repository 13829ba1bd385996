"""Dashboard page ``/functions/{id}``: one function, its health, and an Invoke form.

Shows the triggers, retries and flow-control config as synced, whether the
function is paused (:mod:`offload.engine.pause`), its recent runs, duration
percentiles and failure rate over the last 24 hours. *Invoke* sends an
``inngest/function.invoked`` event naming the function, exactly as ``step.invoke``
does, so the run goes through the same fan-out, flow control and timeouts.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from offload.api.sdk import parse_events
from offload.clock import now
from offload.dashboard.routes import (
    _function_view,
    _gate,
    _post_gate,
    _redirect,
    _render,
    _run_row,
)
from offload.engine.pause import function_pause
from offload.errors import ValidationError
from offload.models import HTTP_FUNCTION_ID
from offload.protocol.messages import FUNCTION_INVOKED_EVENT
from offload.store.base import Change, RunFilter

router = APIRouter(include_in_schema=False)

RECENT = 25
STATS_WINDOW = timedelta(hours=24)
INVOKE_WAIT_S = 5.0
"""How long the Invoke form waits for the run to appear before showing the event."""


async def _paused(engine: Any, function_id: str) -> dict[str, Any] | None:
    """The function's pause (``since``, ``by``), or None when it is not paused."""
    pause = await function_pause(engine.store, function_id)
    return None if pause is None else {"since": pause.paused_at, "by": pause.paused_by}


async def _function_page(request: Request, function_id: str, *, invoke_error: str = "",
                         invoke_data: str = "{}", status_code: int = 200) -> Response:
    engine = request.app.state.engine
    store = engine.store
    fn = None if function_id == HTTP_FUNCTION_ID else \
        await store.function_get(function_id=function_id)
    if fn is None and function_id != HTTP_FUNCTION_ID:
        return _render(request, "error.html", {
            "title": "Function not found",
            "message": f"No synced function {function_id[:200]}."}, status_code=404)
    at = now()
    stats = next((s for s in await store.function_stats(since=at - STATS_WINDOW)
                  if s.function_id == function_id), None)
    page = await store.run_list(filter=RunFilter(function_id=function_id), cursor=None,
                                limit=RECENT)
    app = await store.app_get(app_id=fn.app_id) if fn is not None else None
    return _render(request, "function.html", {
        "nav": "apps", "function_id": function_id,
        "fn": _function_view(fn) if fn is not None else None,
        "app": app, "paused": await _paused(engine, function_id),
        "stats": stats, "runs": [_run_row(r, at) for r in page.data],
        "more_runs": page.next_cursor is not None,
        "invoke_error": invoke_error, "invoke_data": invoke_data}, status_code=status_code)


@router.get("/functions/{function_id}")
async def function_page(function_id: str, request: Request) -> Response:
    """One function: config, pause state, health over 24 h, recent runs, Invoke."""
    if (gate := _gate(request)) is not None:
        return gate
    return await _function_page(request, function_id)


@router.post("/functions/{function_id}/invoke")
async def function_invoke(function_id: str, request: Request) -> Response:
    """Start a run of the function with the form's JSON data; show the run."""
    form, refused = await _post_gate(request)
    if refused is not None:
        return refused
    store = request.app.state.engine.store
    raw = str(form.get("data") or "").strip() or "{}"
    fn = await store.function_get(function_id=function_id)
    if fn is None:
        return await _function_page(request, function_id)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return await _function_page(request, function_id, invoke_data=raw, status_code=400,
                                    invoke_error=f"data is not valid JSON: {exc}")
    try:
        if not isinstance(data, dict):
            raise ValidationError("data", "must be a JSON object", "invalid_type")
        events = parse_events({"name": FUNCTION_INVOKED_EVENT,
                               "data": {**data, "_inngest": {"fn_id": fn.id}}})
    except ValidationError as exc:
        return await _function_page(request, function_id, invoke_data=raw, status_code=400,
                                    invoke_error=f"{exc.field}: {exc.message}")
    result = await store.apply(Change(events=events))
    event_id = result.events[0][0].id
    run_id = await _first_run(store, event_id)
    if run_id is None:  # the fan-out has not run yet: the event page lists its runs
        return _redirect(f"/events/{quote(event_id)}")
    return _redirect(f"/runs/{quote(run_id)}")


async def _first_run(store: Any, event_id: str) -> str | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + INVOKE_WAIT_S
    while True:
        page = await store.run_list(filter=RunFilter(event_id=event_id), cursor=None, limit=1)
        if page.data:
            return str(page.data[0].id)
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(0.1)
