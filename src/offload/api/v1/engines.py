"""``GET /v1/engines``: the engine processes sharing this database, from their heartbeats."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from offload.api.auth import require
from offload.clock import now
from offload.engine.heartbeat import is_alive

router = APIRouter(prefix="/v1/engines", tags=["engines"],
                   dependencies=[Depends(require("admin"))])


@router.get("")
async def list_engines(request: Request) -> dict[str, Any]:
    """Every engine that wrote a heartbeat in the last hour: ``alive`` when it beat within
    three heartbeat periods; ``leases`` is the queue items it holds now."""
    at = now()
    engines = await request.app.state.engine.store.engine_list()
    return {"data": [{"id": e.id, "host": e.host, "pid": e.pid, "version": e.version,
                      "started_at": e.started_at.isoformat(),
                      "heartbeat_at": e.heartbeat_at.isoformat(), "leases": e.leases,
                      "alive": is_alive(e, at)} for e in engines],
            "next_cursor": None}
