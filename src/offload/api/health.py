"""``/healthz`` (the process answers) and ``/readyz`` (the store answers too)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from offload.errors import StoreError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready to accept work: the engine has started and the database answers."""
    engine = request.app.state.engine
    if not engine.started:
        return JSONResponse({"status": "starting"}, status_code=503)
    try:
        await engine.store.ping()
    except StoreError:
        return JSONResponse({"status": "store_unavailable"}, status_code=503,
                            headers={"Retry-After": "2"})
    return JSONResponse({"status": "ok"})
