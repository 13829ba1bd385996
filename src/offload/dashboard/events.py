"""Dashboard page ``/events``: the live event list, and a form to send a test event.

The list refreshes itself every two seconds (the page's auto-refresh region) and
hides offload's own events (``inngest/…``: function finished, failed, cancelled,
invoked, cron timers) unless *show internal* is ticked. *Send* stores an event as
``POST /v1/events`` does, so it starts every function it triggers.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from offload.api.sdk import parse_events
from offload.api.shapes import event_json
from offload.dashboard.routes import PAGE_SIZE, _gate, _post_gate, _redirect, _render
from offload.errors import ValidationError
from offload.models import Event
from offload.store.base import Change

router = APIRouter(include_in_schema=False)

INTERNAL_PREFIX = "inngest/"
"""Names of the events offload (and the Inngest protocol) emit on its own."""
SCAN_PAGES = 20
"""Pages of the store read at most to fill one page of non-internal events."""


def is_internal(name: str) -> bool:
    """True for events offload emits itself (run lifecycle, invokes, cron ticks)."""
    return name.startswith(INTERNAL_PREFIX)


async def _page(store: Any, *, name: str | None, cursor: str | None,
                internal: bool) -> tuple[list[Event], str | None]:
    """One page of events, newest first; internal ones skipped unless asked for."""
    shown: list[Event] = []
    for _ in range(SCAN_PAGES):
        page = await store.event_list(name=name, after=None, before=None, cursor=cursor,
                                      limit=PAGE_SIZE - len(shown))
        for event in page.data:
            if internal or not is_internal(event.name):
                shown.append(event)
        cursor = page.next_cursor
        if len(shown) >= PAGE_SIZE or cursor is None:
            break
    return shown, cursor


async def _events_page(request: Request, *, form: dict[str, str] | None = None,
                       error: str = "", status_code: int = 200) -> Response:
    query = request.query_params
    name = (query.get("name") or "").strip()[:256] or None
    cursor = query.get("cursor") or None
    internal = query.get("internal") == "1"
    events, next_cursor = await _page(request.app.state.engine.store, name=name, cursor=cursor,
                                      internal=internal or bool(name and is_internal(name)))
    params = {k: v for k, v in (("name", name), ("internal", "1" if internal else None)) if v}
    return _render(request, "events.html", {
        "nav": "events", "events": [event_json(e) for e in events], "name": name or "",
        "internal": internal, "live": cursor is None,
        "send": form or {"name": "", "data": "{}"}, "send_error": error,
        "next_url": f"/events?{urlencode({**params, 'cursor': next_cursor})}"
        if next_cursor else None,
        "first_url": f"/events?{urlencode(params)}" if cursor else None},
        status_code=status_code)


@router.get("/events")
async def events(request: Request) -> Response:
    """Events newest first (live), by name; internal events only when asked for."""
    if (gate := _gate(request)) is not None:
        return gate
    return await _events_page(request)


@router.post("/events/send")
async def send_event(request: Request) -> Response:
    """Send a test event from the form; show it (and the runs it starts)."""
    form, refused = await _post_gate(request)
    if refused is not None:
        return refused
    name = str(form.get("name") or "").strip()
    raw = str(form.get("data") or "").strip() or "{}"
    values = {"name": name, "data": raw}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return await _events_page(request, form=values, status_code=400,
                                  error=f"data is not valid JSON: {exc}")
    try:
        events = parse_events({"name": name, "data": data})
    except ValidationError as exc:
        field = exc.field.replace("body.", "", 1)
        return await _events_page(request, form=values, status_code=400,
                                  error=f"{field}: {exc.message}")
    result = await request.app.state.engine.store.apply(Change(events=events))
    return _redirect(f"/events/{quote(result.events[0][0].id)}?notice=event_sent")
