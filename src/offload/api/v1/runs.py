"""``/v1/runs``: list, read, wait for, cancel, replay and rerun runs of every kind.

Failed runs are the dead-letter view: ``GET /v1/runs?status=failed``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from offload.api import cursors
from offload.api.auth import require
from offload.api.problems import problem_responses
from offload.api.shapes import run_json
from offload.engine import Engine
from offload.errors import ConflictError, NotFoundError, ValidationError
from offload.models import Run, RunStatus
from offload.store.base import NewRun, RunFilter

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
    correlation_id: Annotated[str | None, Query(max_length=255)] = None,
    name: Annotated[str | None, Query(max_length=255, description="HTTP tasks with this "
                                      "name.")] = None,
    exclude_replayed: Annotated[bool, Query(description="Leave out runs that a run already "
                                            "replays (the failed view's default).")] = False,
    after: Annotated[datetime | None, Query(description="Created at or after.")] = None,
    before: Annotated[datetime | None, Query(description="Created before.")] = None,
    q: Annotated[str | None, Query(
        max_length=200, description="Run id, correlation id or error text.")] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Runs newest first, filtered; ``next_cursor`` fetches the next page."""
    for label, value in (("after", after), ("before", before)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(f"query.{label}", "needs a time zone offset",
                                  "naive_datetime")
    for label, text in (("function_id", function_id), ("queue", queue), ("event_id", event_id),
                        ("correlation_id", correlation_id), ("name", name), ("q", q),
                        ("cursor", cursor)):
        if text is not None and "\x00" in text:
            # PostgreSQL text cannot hold NUL; without this the store error would be a 503.
            raise ValidationError(f"query.{label}", "must not contain NUL characters",
                                  "invalid_character")
    page = await request.app.state.engine.store.run_list(
        filter=RunFilter(statuses=parse_statuses(status), function_id=function_id, queue=queue,
                         event_id=event_id, created_after=after, created_before=before,
                         search=q, correlation_id=correlation_id, name=name,
                         unreplayed=exclude_replayed),
        cursor=cursors.decode("runs", cursor), limit=limit)
    due = await request.app.state.engine.store.run_next_attempts(
        run_ids=[r.id for r in page.data if not r.status.terminal])
    return {"data": [run_json(r, due.get(r.id)) for r in page.data],
            "next_cursor": cursors.encode("runs", page.next_cursor)}


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
    """A run with its steps, and ``actions``: who cancelled, replayed or reran it."""
    return await _full_run_json(request, await get_run_or_404(request, run_id))


async def _full_run_json(request: Request, run: Run) -> dict[str, Any]:
    """The run as ``GET /v1/runs/{id}`` and its ``/wait`` show it, next attempt and actions."""
    from offload.engine.audit import run_actions

    store = request.app.state.engine.store
    due = await store.run_next_attempts(run_ids=[run.id])
    body = run_json(run, due.get(run.id))
    body["actions"] = await run_actions(store, run.id)
    return body


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
            return await _full_run_json(request, run)
        await engine.wait_finished(run_id, min(remaining, _POLL_S))


@router.post("/{run_id}/cancel")
async def cancel_run(run_id: str, request: Request) -> dict[str, Any]:
    """Cancel a run that has not ended; it never calls its target or app again."""
    engine: Engine = request.app.state.engine
    run = await get_run_or_404(request, run_id, with_steps=False)
    cancelled = await engine.runs.cancel(run.id, "api", run=run)
    if cancelled is None:
        ended = await get_run_or_404(request, run_id, with_steps=False)
        raise ConflictError(f"run {run.id} has already ended ({ended.status.value})")
    return run_json(cancelled)


@router.post("/{run_id}/replay", status_code=202)
async def replay_run(run_id: str, request: Request) -> dict[str, Any]:
    """Start a new run with the same input, linked to this one by ``replay_of``."""
    run = await get_run_or_404(request, run_id, with_steps=False)
    engine: Engine = request.app.state.engine
    return run_json(await engine.runs.replay(run))


class RerunIn(BaseModel):
    """Rerun a run from one of its steps."""

    model_config = ConfigDict(extra="forbid")

    step_id: str = Field(min_length=1, max_length=256,
                         description="The step to run again; the steps that finished before "
                                     "it keep their recorded outputs.")
    input: Any = Field(None, description="Optional edited input. HTTP task: task fields to "
                       "change (e.g. body, headers, url). Durable function: the new `data` of "
                       "the triggering event, which the step and the rest of the run see.")


def _new_task(run: Run, edits: Any, at: datetime) -> NewRun:
    """The new run of an HTTP task rerun: its stored spec with ``edits`` applied."""
    from offload.api.v1.tasks import task_from_spec

    if edits is not None and not isinstance(edits, dict):
        raise ValidationError("body.input", "must be an object of task fields to change",
                              "object_expected")
    task = task_from_spec(run.input or {}, edits or {}, field_prefix="body.input")
    new = task.new_run(at)
    new.idempotency = None
    new.replay_of = run.id
    return new


async def rerun_from_step(engine: Engine, run: Run, *, step_id: str, input: Any = None) -> Run:
    """Rerun ``run`` from ``step_id`` (see :meth:`RunLifecycle.rerun_from_step`), with the
    API's parsing of edited HTTP-task fields."""
    return await engine.runs.rerun_from_step(run, step_id=step_id, input=input,
                                             new_task=_new_task)


@router.post("/{run_id}/rerun", status_code=202)
async def rerun_run(run_id: str, body: RerunIn, request: Request) -> dict[str, Any]:
    """Rerun from a step: earlier steps keep their recorded outputs (they are not called
    again), the chosen step and everything after it run anew, optionally with edited input."""
    run = await get_run_or_404(request, run_id)
    rerun = await rerun_from_step(request.app.state.engine, run, step_id=body.step_id,
                                  input=body.input)
    return run_json(rerun)
