"""Pause and resume functions and queues; ``/v1/queues`` lists queues with their state.

While paused, new runs are accepted and queued but none starts; in-flight attempts
finish. Resuming starts the backlog earliest due first under its flow-control limits.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from offload.api.auth import require
from offload.api.problems import problem_responses
from offload.engine import pause as pausing
from offload.errors import NotFoundError
from offload.models import HTTP_FUNCTION_ID
from offload.store.ops import Actor

QUEUE_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"
"""The queue names ``POST /v1/tasks`` accepts."""

router = APIRouter(tags=["pause"], dependencies=[Depends(require("admin"))],
                   responses=problem_responses(401, 403, 404, 422, 503))

_FunctionId = Annotated[str, Path(min_length=1, max_length=512, pattern=r"^[^\x00]+$")]
_QueueName = Annotated[str, Path(pattern=QUEUE_NAME)]


def _by(request: Request) -> str | None:
    actor = getattr(request.state, "actor", None)
    return actor.name if isinstance(actor, Actor) else None


async def _function_or_404(request: Request, function_id: str) -> None:
    if function_id == HTTP_FUNCTION_ID:  # the built-in function of HTTP tasks
        return
    store = request.app.state.engine.store
    if await store.function_get(function_id=function_id) is None:
        raise NotFoundError(f"no function with id {function_id[:200]!r}")


async def _function_state(request: Request, function_id: str) -> dict[str, Any]:
    found = (await pausing.pauses(request.app.state.engine.store, "function")).get(function_id)
    return {"id": function_id, "paused": found is not None, "pause": pausing.pause_json(found)}


@router.post("/v1/functions/{function_id}/pause")
async def pause_function(function_id: _FunctionId, request: Request) -> dict[str, Any]:
    """Pause a function (``http`` is every HTTP task): its runs queue up, none starts."""
    await _function_or_404(request, function_id)
    await pausing.pause(request.app.state.engine.store, "function", function_id,
                        by=_by(request))
    return await _function_state(request, function_id)


@router.post("/v1/functions/{function_id}/resume")
async def resume_function(function_id: _FunctionId, request: Request) -> dict[str, Any]:
    """Resume a function: its backlog starts in order, under its limits."""
    await _function_or_404(request, function_id)
    await pausing.resume(request.app.state.engine.store, "function", function_id)
    return await _function_state(request, function_id)


@router.get("/v1/queues")
async def list_queues(request: Request) -> dict[str, Any]:
    """Queues with items or a pause: due, scheduled, in flight, held by a pause."""
    found = await pausing.queues(request.app.state.engine.store)
    return {"data": [pausing.queue_json(q) for q in found], "next_cursor": None}


async def _queue(request: Request, name: str) -> dict[str, Any]:
    for q in await pausing.queues(request.app.state.engine.store):
        if q.name == name:
            return pausing.queue_json(q)
    from offload.store.ops import QueueInfo

    return pausing.queue_json(QueueInfo(name=name))


@router.get("/v1/queues/{name}")
async def get_queue(name: _QueueName, request: Request) -> dict[str, Any]:
    """One queue (a queue with no items and no pause shows zeros)."""
    return await _queue(request, name)


@router.post("/v1/queues/{name}/pause")
async def pause_queue(name: _QueueName, request: Request) -> dict[str, Any]:
    """Pause a queue: its runs queue up, none starts. Works before the queue has items."""
    await pausing.pause(request.app.state.engine.store, "queue", name, by=_by(request))
    return await _queue(request, name)


@router.post("/v1/queues/{name}/resume")
async def resume_queue(name: _QueueName, request: Request) -> dict[str, Any]:
    """Resume a queue: its backlog starts in order, under its limits."""
    await pausing.resume(request.app.state.engine.store, "queue", name)
    return await _queue(request, name)
