"""Durable functions for an engine: the executor, event triggers and the cron service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from offload.engine.catalog import FunctionCatalog
from offload.engine.cron_service import CronService
from offload.engine.executor import Executor
from offload.engine.triggers import Triggers

if TYPE_CHECKING:
    from offload.engine import Engine


def attach(engine: Engine) -> None:
    """Give ``engine`` its durable-function services."""
    assert engine.client is not None
    engine.functions = FunctionCatalog(engine.store)
    engine.executor = Executor(engine.store, engine.client, engine.settings,
                               runs=engine.runs, functions=engine.functions)
    engine.triggers = Triggers(engine.store, runs=engine.runs, functions=engine.functions)
    engine.cron = CronService(engine.store, catchup=engine.settings.cron_catchup)
    engine._services.append(engine.cron)
