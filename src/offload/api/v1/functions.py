"""``/v1/functions``: synced functions with their triggers, config and next cron times."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from offload.api.auth import require
from offload.api.shapes import function_json
from offload.clock import now
from offload.engine.cron import next_tick
from offload.engine.cron_service import cron_triggers
from offload.engine.pause import pauses, with_pause
from offload.errors import CronError, NotFoundError
from offload.models import Function

router = APIRouter(prefix="/v1/functions", tags=["functions"],
                   dependencies=[Depends(require("admin"))])


def describe(fn: Function) -> dict[str, Any]:
    """A function with its triggers, retries and the next fire time of each cron."""
    at = now()
    crons: list[dict[str, Any]] = []
    for text, schedule in cron_triggers(fn):
        try:
            upcoming = next_tick(schedule, at).isoformat()
        except CronError:
            upcoming = None
        crons.append({"cron": text, "next_fire_at": upcoming})
    nexts = [c["next_fire_at"] for c in crons if c["next_fire_at"]]
    return {**function_json(fn), "triggers": fn.config.get("triggers") or [],
            "retries": fn.spec.retries, "crons": crons,
            "next_fire_at": min(nexts) if nexts else None}


@router.get("")
async def list_functions(request: Request, app_id: str | None = None) -> dict[str, Any]:
    """Every synced function (optionally of one app)."""
    functions = await request.app.state.engine.store.function_list(app_id=app_id)
    paused = await pauses(request.app.state.engine.store, "function")
    return {"data": [with_pause(describe(f), paused) for f in functions], "next_cursor": None}


@router.get("/{function_id}")
async def get_function(function_id: str, request: Request) -> dict[str, Any]:
    """One function."""
    fn = await request.app.state.engine.store.function_get(function_id=function_id)
    if fn is None:
        raise NotFoundError(f"no function with id {function_id[:200]!r}")
    return with_pause(describe(fn), await pauses(request.app.state.engine.store, "function"))
