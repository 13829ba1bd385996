"""The real engine in this process: real services, a real database, fake time and a
fake outside world.

:class:`InProcessEngine` builds :class:`offload.engine.Engine` — its Executor,
HttpTasks, Triggers, Scheduler and RunLifecycle — on a SQLite file in a temp dir (or
the PostgreSQL database it is given),
with a :class:`~offload.clock.FakeClock` installed and a
:class:`~tests.support.fake_app.FakeApp` as the outbound transport. Nothing runs in
the background: :meth:`settle` claims and handles whatever is due now until nothing
is, and :meth:`advance` moves the clock and settles. No socket, no sleep.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from offload import clock
from offload.clock import FakeClock
from offload.config import Settings
from offload.engine import Engine
from offload.ids import new_id
from offload.models import App, Function, Run
from offload.protocol.function_config import load_function_config
from offload.store import open_store
from offload.store.base import Change, NewEvent, RunFilter
from offload.store.sqlite import SqliteStore
from tests.support.fake_app import APP_URL, FakeApp


class InProcessEngine:
    """An engine driven step by step (see the module docstring)."""

    def __init__(self, engine: Engine, app: FakeApp, fake_clock: FakeClock) -> None:
        self.engine = engine
        self.app = app
        self.clock = fake_clock

    @property
    def store(self) -> Any:
        return self.engine.store

    async def settle(self, max_rounds: int = 100) -> int:
        """Handle everything due now (and what that makes due now); items handled."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.engine.scheduler.run_due()
            if not handled:
                return total
            total += handled
        raise AssertionError(f"still busy after {max_rounds} rounds")

    async def advance(self, seconds: float) -> int:
        """Move the clock forward and handle what became due."""
        self.clock.advance(timedelta(seconds=seconds))
        return await self.settle()

    async def sync(self, *configs: dict[str, Any], app_id: str = "app") -> None:
        """Register functions as an SDK sync would (``configs`` from ``FakeApp.config``)."""
        at = self.clock.now()
        app = App(id=app_id, url=APP_URL, sdk="fake:v0", framework=None, app_version=None,
                  checksum=None, sync_error=None, synced_at=at, created_at=at, updated_at=at)
        await self.store.app_sync(app=app, functions=[
            Function(id=c["id"], app_id=app_id, name=c["name"], config=c, created_at=at,
                     updated_at=at, spec=load_function_config(c)) for c in configs])

    async def send(self, name: str, data: dict[str, Any] | None = None) -> str:
        """Accept an event (as ``POST /e/{key}`` does) and handle what it starts."""
        at = self.clock.now()
        event_id = new_id()
        await self.store.apply(Change(events=[NewEvent(
            id=event_id, name=name, data=data or {}, ts=int(at.timestamp() * 1000),
            received_at=at)]))
        await self.settle()
        return event_id

    async def runs_of(self, event_id: str) -> list[Run]:
        """The runs an event started."""
        page = await self.store.run_list(filter=RunFilter(event_id=event_id), cursor=None,
                                         limit=100)
        return list(page.data)

    async def run(self, run_id: str) -> Run:
        """A run with its steps."""
        found = await self.store.run_get(run_id=run_id, with_steps=True)
        assert found is not None
        return found


@contextlib.asynccontextmanager
async def in_process_engine(tmp_path: Path, database_url: str | None = None,
                            **settings: Any) -> AsyncIterator[InProcessEngine]:
    """An :class:`InProcessEngine` on ``database_url`` (default: a SQLite file in
    ``tmp_path``)."""
    fake_clock = FakeClock()
    app = FakeApp()
    with clock.use(fake_clock):
        config = Settings(data_dir=tmp_path, **settings)
        store = open_store(database_url, durable=False) if database_url else \
            SqliteStore(tmp_path / "offload.db", durable=False)
        engine = Engine(config, store=store, transport=app)
        await engine.start(run_scheduler=False)
        try:
            yield InProcessEngine(engine, app, fake_clock)
        finally:
            await engine.stop()
