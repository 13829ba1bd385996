"""Dashboard page ``/engines``: the engine processes sharing this store.

Each engine upserts a heartbeat row (:mod:`offload.engine.heartbeat`); this page
shows host, pid, version, start time, the leases each holds and how long ago it
last beat. Engines silent for three heartbeat periods are shown as missing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from offload.clock import now
from offload.dashboard.routes import _duration_ms, _fmt_ms, _gate, _render
from offload.engine.heartbeat import EVERY, is_alive

router = APIRouter(include_in_schema=False)


@router.get("/engines")
async def engines(request: Request) -> Response:
    """Engine processes: alive ones first, then those whose heartbeat stopped."""
    if (gate := _gate(request)) is not None:
        return gate
    engine = request.app.state.engine
    at = now()
    here = getattr(getattr(engine, "scheduler", None), "owner", None)
    rows: list[dict[str, Any]] = []
    for info in await engine.store.engine_list():
        rows.append({"id": info.id, "host": info.host, "pid": info.pid,
                     "version": info.version, "started_at": info.started_at,
                     "uptime": _fmt_ms(_duration_ms(info.started_at, at)),
                     "heartbeat_at": info.heartbeat_at,
                     "heartbeat_ago": _fmt_ms(_duration_ms(info.heartbeat_at, at)),
                     "leases": info.leases, "alive": is_alive(info, at),
                     "this": info.id == here})
    rows.sort(key=lambda r: (not r["alive"], r["id"]))
    return _render(request, "engines.html", {
        "nav": "engines", "engines": rows, "every_s": int(EVERY.total_seconds()),
        "alive": sum(1 for r in rows if r["alive"])})
