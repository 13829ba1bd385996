"""The ASGI app factory: routers, error bodies, body limits, and the engine's lifespan."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from offload import __version__
from offload.api import health, problems
from offload.api.auth import Authenticator
from offload.api.limits import BodyLimit
from offload.api.v1 import runs, tasks
from offload.config import Settings
from offload.engine import Engine

# Routers of later layers, included when present (SDK endpoints, events, apps, dashboard).
_OPTIONAL_ROUTERS = (
    "offload.api.sdk",
    "offload.api.v1.events",
    "offload.api.v1.apps",
    "offload.api.v1.functions",
    "offload.api.v1.keys",
    "offload.api.metrics",
    "offload.dashboard.routes",
)


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
                  description="Durable background jobs and workflows: HTTP tasks, durable "
                              "functions over the Inngest SDK protocol, runs, events.")
    app.state.engine = engine
    app.state.auth = Authenticator(engine)
    problems.install(app)
    app.include_router(health.router)
    app.include_router(tasks.router)
    app.include_router(runs.router)
    for module_name in _OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        app.include_router(module.router)
    app.add_middleware(BodyLimit, limit=engine.settings.max_body_bytes)
    return app
