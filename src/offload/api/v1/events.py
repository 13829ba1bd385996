"""``/v1/events``: send events, list them, and see the runs an event started."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse

from offload.api import cursors
from offload.api.auth import require
from offload.api.problems import problem_responses
from offload.api.sdk import parse_events, store_events
from offload.api.shapes import event_json, run_json
from offload.errors import NotFoundError, ValidationError
from offload.store.base import RunFilter

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", status_code=202, dependencies=[Depends(require("ingest"))])
async def send(request: Request) -> JSONResponse:
    """Send one event (an object) or many (a list): ``{"ids": [...]}``.

    Each event is ``{"name", "data"?, "id"?, "ts"?, "user"?}``; a repeated ``id`` is
    deduplicated and answers the first event's id.
    """
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}", "json_invalid") from None
    events = parse_events(body)
    ids = await store_events(request, events)
    return JSONResponse({"ids": ids}, status_code=202)


@router.get("", dependencies=[Depends(require("admin"))],
            responses=problem_responses(400, 422))
async def list_events(
    request: Request,
    name: Annotated[str | None, Query(max_length=256)] = None,
    after: Annotated[datetime | None, Query(description="Received at or after.")] = None,
    before: Annotated[datetime | None, Query(description="Received before.")] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Events newest first; ``next_cursor`` fetches the next page."""
    for label, value in (("after", after), ("before", before)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(f"query.{label}", "needs a time zone offset",
                                  "naive_datetime")
    page = await request.app.state.engine.store.event_list(
        name=name, after=after, before=before, cursor=cursors.decode("events", cursor),
        limit=limit)
    return {"data": [event_json(e) for e in page.data],
            "next_cursor": cursors.encode("events", page.next_cursor)}


@router.get("/{event_id}", dependencies=[Depends(require("admin"))])
async def get_event(event_id: str, request: Request) -> dict[str, Any]:
    """One event with the runs it started."""
    store = request.app.state.engine.store
    event = await store.event_get(event_id=event_id)
    if event is None:
        raise NotFoundError(f"no event with id {event_id[:64]!r}")
    page = await store.run_list(filter=RunFilter(event_id=event.id), cursor=None, limit=500)
    return {**event_json(event), "runs": [run_json(r) for r in page.data]}
