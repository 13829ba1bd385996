"""Announce this engine process in the store and beat every few seconds.

The dashboard's Engines page lists the processes whose heartbeat is recent, with
the leases each holds. A clean stop removes the row; a crashed engine's row goes
stale and is pruned after :data:`FORGET_AFTER`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import datetime, timedelta

from offload import __version__
from offload.clock import now
from offload.engine.background import cancel_and_wait
from offload.models import EngineInfo
from offload.store import Store

log = logging.getLogger("offload.engine")

EVERY = timedelta(seconds=5)
"""Heartbeat period."""
FORGET_AFTER = timedelta(hours=1)
"""Rows of engines silent this long are deleted."""
PRUNE_EVERY = timedelta(minutes=1)
"""How often a beat also deletes those rows."""


def is_alive(engine: EngineInfo, at: datetime) -> bool:
    """True when the engine beat within three periods of ``at``."""
    return at - engine.heartbeat_at <= EVERY * 3


class Heartbeat:
    """A background task upserting this engine's row in ``engines``."""

    def __init__(self, store: Store, engine_id: str, *, every: timedelta = EVERY) -> None:
        self.store = store
        self.every = every
        started = now()
        self.info = EngineInfo(id=engine_id, host=socket.gethostname(), pid=os.getpid(),
                               version=__version__, started_at=started, heartbeat_at=started)
        self._task: asyncio.Task[None] | None = None
        self._pruned_at: datetime | None = None

    async def start(self) -> None:
        """Write the first heartbeat now, then keep beating in the background."""
        await self._beat()
        self._task = asyncio.create_task(self._loop(), name="offload-heartbeat")

    async def stop(self) -> None:
        """Stop beating and remove this engine's row."""
        await cancel_and_wait(self._task)
        self._task = None
        try:
            await self.store.engine_delete(engine_id=self.info.id)
        except Exception as exc:  # noqa: BLE001 - stopping must not fail on a store outage
            log.warning("engine row not removed", extra={"error": str(exc)})

    async def _beat(self) -> None:
        at = now()
        await self.store.engine_heartbeat(engine=EngineInfo(
            id=self.info.id, host=self.info.host, pid=self.info.pid, version=self.info.version,
            started_at=self.info.started_at, heartbeat_at=at))
        if self._pruned_at is None or at - self._pruned_at >= PRUNE_EVERY:
            await self.store.engine_prune(heartbeat_before=at - FORGET_AFTER)
            self._pruned_at = at

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every.total_seconds())
            try:
                await self._beat()
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                log.warning("heartbeat failed", extra={"error": str(exc)})
