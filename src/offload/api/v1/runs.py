"""``/v1/runs``: list, read, wait for, cancel and replay runs of every kind.

Failed runs are the dead-letter view: ``GET /v1/runs?status=failed``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from offload.api.auth import require
from offload.api.problems import problem_responses
from offload.api.shapes import run_json
from offload.clock import now
from offload.errors import ConflictError, NotFoundError, ValidationError
from offload.ids import new_id
from offload.models import ItemKind, Run, RunStatus
from offload.store.base import Change, NewItem, NewRun, RunFilter

router = APIRouter(prefix="/v1/runs", tags=["runs"], dependencies=[Depends(require("admin"))],
                   responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503))

_POLL_S = 0.5


def parse_statuses(raw: list[str] | None) -> tuple[RunStatus, ...]:
    """Status filters, given repeated or comma-separated."""
    out: list[RunStatus] = []
    for chunk in raw or []:
        for value in chunk.split(","):
            value = value.strip()
            if not value:
                continue
            try:
                out.append(RunStatus(value))
            except ValueError:
                allowed = ", ".join(s.value for s in RunStatus)
                raise ValidationError("query.status", f"unknown status {value[:40]!r}; "
                                      f"use one of {allowed}", "enum") from None
    return tuple(out)


@router.get("")
async def list_runs(
    request: Request,
    status: Annotated[list[str] | None, Query(description="Filter by status "
                                              "(repeat or comma-separate).")] = None,
    function_id: Annotated[str | None, Query(max_length=512)] = None,
    queue: Annotated[str | None, Query(max_length=64)] = None,
    event_id: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[datetime | None, Query(description="Created at or after.")] = None,
    before: Annotated[datetime | None, Query(description="Created before.")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Run id or error text.")] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Runs newest first, filtered; ``next_cursor`` fetches the next page."""
    for name, value in (("after", after), ("before", before)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(f"query.{name}", "needs a time zone offset", "naive_datetime")
    for name, text in (("function_id", function_id), ("queue", queue), ("event_id", event_id),
                       ("q", q), ("cursor", cursor)):
        if text is not None and "\x00" in text:
            # PostgreSQL text cannot hold NUL; without this the store error would be a 503.
            raise ValidationError(f"query.{name}", "must not contain NUL characters",
                                  "invalid_character")
    page = await request.app.state.engine.store.run_list(
        filter=RunFilter(statuses=parse_statuses(status), function_id=function_id, queue=queue,
                         event_id=event_id, created_after=after, created_before=before,
                         search=q),
        cursor=cursor, limit=limit)
    return {"data": [run_json(r) for r in page.data], "next_cursor": page.next_cursor}


async def get_run_or_404(request: Request, run_id: str, *, with_steps: bool = True) -> Run:
    """The run, or a 404 naming it."""
    if "\x00" in run_id:  # no id holds NUL, and PostgreSQL would refuse the query
        raise NotFoundError(f"no run with id {run_id[:64]!r}")
    run: Run | None = await request.app.state.engine.store.run_get(
        run_id=run_id, with_steps=with_steps)
    if run is None:
        raise NotFoundError(f"no run with id {run_id[:64]!r}")
    return run


@router.get("/{run_id}")
async def get_run(run_id: str, request: Request) -> dict[str, Any]:
    """A run with its steps."""
    return run_json(await get_run_or_404(request, run_id))


@router.get("/{run_id}/wait")
async def wait_run(
    run_id: str, request: Request,
    timeout: Annotated[float, Query(ge=0, le=300, description="Seconds to wait.")] = 30.0,
) -> dict[str, Any]:
    """The run once it ends, or as it is when ``timeout`` runs out (check ``status``)."""
    engine = request.app.state.engine
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        run = await get_run_or_404(request, run_id)
        remaining = deadline - loop.time()
        if run.status.terminal or remaining <= 0:
            return run_json(run)
        await engine.wait_finished(run_id, min(remaining, _POLL_S))


@router.post("/{run_id}/cancel")
async def cancel_run(run_id: str, request: Request) -> dict[str, Any]:
    """Cancel a run that has not ended; it never calls its target or app again."""
    engine = request.app.state.engine
    run = await get_run_or_404(request, run_id, with_steps=False)
    cancelled = await engine.store.run_cancel(
        run_id=run.id, at=now(), error={"name": "cancelled", "message": "cancelled by API",
                                        "stack": None})
    if cancelled is None:
        raise ConflictError(f"run {run.id} has already ended ({run.status.value})")
    engine.notify_finished(run.id)
    return run_json(cancelled)


def replay_of(run: Run, at: datetime) -> NewRun:
    """A new run with the same function, input and events, linked to ``run``."""
    return NewRun(id=new_id(), function_id=run.function_id, app_id=run.app_id, created_at=at,
                  input=run.input, event_ids=list(run.event_ids), queue=run.queue,
                  replay_of=run.id, correlation_id=run.correlation_id,
                  items=[NewItem(kind=ItemKind.RUN, due_at=at, queue=run.queue or "default")])


@router.post("/{run_id}/replay", status_code=202)
async def replay_run(run_id: str, request: Request) -> dict[str, Any]:
    """Start a new run with the same input, linked to this one by ``replay_of``."""
    run = await get_run_or_404(request, run_id, with_steps=False)
    result = await request.app.state.engine.store.apply(Change(runs=[replay_of(run, now())]))
    return run_json(result.runs[0][0])

