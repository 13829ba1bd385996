"""The ASGI app: the /v1 API, the SDK endpoints and the dashboard composed, with error
bodies, body limits and the engine's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from offload import __version__
from offload.api import health, metrics, problems, sdk
from offload.api.auditing import AuditLog
from offload.api.auth import Authenticator
from offload.api.fastpath import IngestFastPath
from offload.api.identifiers import reject_control_characters
from offload.api.limits import BodyLimit
from offload.api.v1 import (
    alerts,
    apps,
    audit,
    bulk,
    engines,
    events,
    functions,
    pause,
    runs,
    secrets,
    tasks,
    webhooks,
)
from offload.config import Settings
from offload.dashboard import ops as dashboard_ops
from offload.dashboard import pages as dashboard_pages
from offload.dashboard import routes as dashboard
from offload.dashboard.login import verify_session
from offload.engine import Engine

# Order matters where paths overlap: /v1/runs/bulk before /v1/runs/{id}.
_ROUTERS = (health.router, sdk.router, tasks.router, bulk.router, runs.router, events.router,
            apps.router, functions.router, webhooks.router, webhooks.receive_router,
            secrets.router, engines.router, metrics.router, dashboard_pages.router,
            dashboard.router)


def create_app(settings: Settings, *, engine: Engine | None = None,
               run_scheduler: bool = True) -> FastAPI:
    """The offload app. The engine starts and stops with the app's lifespan."""
    engine = engine or Engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start(run_scheduler=run_scheduler)
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(title="offload", version=__version__, lifespan=lifespan,
                  dependencies=[Depends(reject_control_characters), Depends(verify_session)],
                  docs_url=None,  # served from vendored files: dashboard/apidocs.py
                  description="Durable background jobs and workflows: HTTP tasks, durable "
                              "functions over the Inngest SDK protocol, runs, events.")
    app.state.engine = engine
    app.state.auth = Authenticator(engine)
    problems.install(app)
    for router in _ROUTERS:
        app.include_router(router)
    for router in (pause.router, audit.router, alerts.router, dashboard_ops.router):
        app.include_router(router)  # pause, audit, alerts (API and dashboard pages)
    app.add_middleware(AuditLog, store_of=lambda scope: engine.store)
    app.add_middleware(BodyLimit, limit=engine.settings.max_body_bytes)
    # Outermost: valid task ingest skips the stack above (same handlers, same answers).
    app.add_middleware(IngestFastPath, root=app, limit=engine.settings.max_body_bytes)
    return app
