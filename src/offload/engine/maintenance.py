"""Housekeeping off the hot path: pruning finished runs, their steps, old events and
old audit-log entries (``audit_retention_days``, default 90).

Runs ended more than ``retention_days`` ago (default 7) are deleted with their
steps, in small batches with a pause between them, so pruning never holds the
database (SQLite's single writer especially) for long. Every engine may run it;
the deletes are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from offload.clock import now
from offload.engine.background import cancel_and_wait
from offload.errors import StoreError
from offload.store.base import Store

log = logging.getLogger("offload.maintenance")

BATCH = 500
"""Rows deleted per transaction: small enough to keep write latency flat."""


class Maintenance:
    """Prunes expired runs and events every ``every`` in the background."""

    def __init__(self, store: Store, *, retention: timedelta,
                 every: timedelta = timedelta(minutes=5),
                 audit_retention: timedelta | None = None) -> None:
        self.store = store
        self.retention = retention
        self.audit_retention = audit_retention
        """Audit-log entries older than this are pruned too (None keeps them)."""
        self.every = every
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the background loop."""
        self._task = asyncio.create_task(self._loop(), name="offload-maintenance")

    async def stop(self) -> None:
        """Stop the loop."""
        await cancel_and_wait(self._task)

    async def prune_once(self) -> int:
        """Delete everything past retention, batch by batch; the number of rows deleted."""
        total = 0
        cutoff = now() - self.retention
        while True:
            deleted = await self.store.run_prune(ended_before=cutoff, limit=BATCH)
            total += deleted
            if deleted < BATCH:
                break
            await asyncio.sleep(0.05)
        # Webhook delivery records (the redelivery guard) live as long as runs.
        while (deleted := await self.store.webhook_delivery_prune(received_before=cutoff,
                                                                   limit=BATCH)):
            total += deleted
            if deleted < BATCH:
                break
            await asyncio.sleep(0.05)
        if self.audit_retention is not None:
            from offload.engine.pause import ops_store

            before = now() - self.audit_retention
            while (deleted := await ops_store(self.store).audit_prune(before=before,
                                                                       limit=BATCH)):
                total += deleted
                if deleted < BATCH:
                    break
                await asyncio.sleep(0.05)
        return total

    async def _loop(self) -> None:
        while True:
            try:
                deleted = await self.prune_once()
                if deleted:
                    log.info("pruned expired runs and events", extra={"deleted": deleted})
            except StoreError as exc:
                log.warning("pruning failed", extra={"error": str(exc)})
            await asyncio.sleep(self.every.total_seconds())
