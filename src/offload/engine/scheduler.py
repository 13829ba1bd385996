"""The scheduler: claims due queue items under a lease and hands each to its handler.

It wakes the moment new work is committed (the store's listener: an in-process
signal on SQLite, ``LISTEN/NOTIFY`` on PostgreSQL) and otherwise sleeps until the
earliest due item, so there is no polling tick on the hot path. Leases are
renewed while items are in flight; leases of a dead engine expire and are
rescued by :meth:`Scheduler.rescue_loop` on any engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from offload import metrics
from offload.clock import now
from offload.errors import LeaseLostError, StoreError
from offload.ids import new_id, new_token
from offload.models import ItemKind, QueueItem
from offload.store.base import WAKE_WITHIN_MS, Rescued, Store

log = logging.getLogger("offload.scheduler")

Handler = Callable[[QueueItem], Awaitable[None]]
OnExhausted = Callable[[Rescued], Awaitable[object]]
IDLE_POLL_S = WAKE_WITHIN_MS / 1000
"""Longest sleep without a wake-up: catches work committed by other SQLite processes,
and work committed due later than WAKE_WITHIN_MS (such commits wake no one)."""
GATHER_S = 0.002
"""With most slots busy, how long to let freed slots gather before a small claim."""


class Scheduler:
    """Claims due items in batches and runs up to ``max_inflight`` of them at once."""

    def __init__(
        self,
        store: Store,
        handlers: dict[ItemKind, Handler],
        *,
        max_inflight: int = 256,
        lease: timedelta = timedelta(seconds=30),
        rescue_every: timedelta = timedelta(seconds=5),
        max_expiries: int = 5,
        batch: int = 64,
        owner: str | None = None,
        on_exhausted: OnExhausted | None = None,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.owner = owner or f"engine-{new_id()}"
        self.max_inflight = max_inflight
        self.lease = lease
        self.rescue_every = rescue_every
        self.max_expiries = max_expiries
        self.batch = batch
        self.on_exhausted = on_exhausted
        """Called for each rescued item past ``max_expiries`` (``RunLifecycle.lease_exhausted``
        fails its run)."""
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._min_claim = max(1, min(batch, max_inflight // 4))
        self._gathered = False

    def wake(self) -> None:
        """New work may be due: claim now."""
        self._wake.set()

    @property
    def inflight(self) -> int:
        """Items being worked on right now."""
        return len(self._inflight)

    async def start(self) -> None:
        """Start claiming, renewing and rescuing."""
        # Only a process that claims listens (on SQLite the first one to listen to a file
        # hears the wake-ups of the processes that only accept work).
        self.store.add_listener(self.wake)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="offload-claim"),
            asyncio.create_task(self._renew_loop(), name="offload-renew"),
            asyncio.create_task(self._rescue_loop(), name="offload-rescue"),
        ]

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop claiming, give in-flight work ``grace`` seconds, then cancel it.

        The leases of cancelled work are handed back, so another engine (or this one
        after a restart) picks it up at once; if that fails they expire and are rescued,
        so stopping never loses work.
        """
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
                try:
                    released = await self.store.lease_release(owner=self.owner)
                    log.info("leases released on shutdown", extra={"released": released})
                except StoreError as exc:
                    log.warning("could not release leases; they will expire",
                                extra={"error": str(exc)})

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopping:
            free = self.max_inflight - len(self._inflight)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            if free < self._min_claim and not self._gathered:
                # Nearly full: one claim transaction per freed slot would cost more than
                # the work; let a few more slots free up first (bounded by GATHER_S).
                self._gathered = True
                self._slot.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._gather(), GATHER_S)
                continue
            self._gathered = False
            self._wake.clear()
            limit = min(free, self.batch)
            try:
                at = now()
                items = await metrics.timed_store("queue_claim", self.store.queue_claim(
                    owner=self.owner, token=new_token(), now=at, limit=limit,
                    lease_until=at + self.lease))
                failures = 0
            except StoreError as exc:
                failures += 1
                log.warning("claim failed", extra={"error": str(exc), "failures": failures})
                await asyncio.sleep(min(0.1 * 2 ** failures, 5.0))
                continue
            for item in items:
                task = asyncio.create_task(self._handle(item))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if len(items) == limit:
                continue
            await self._sleep_until_due()

    async def _sleep_until_due(self) -> None:
        timeout = IDLE_POLL_S
        try:
            due = await self.store.queue_next_due()
        except StoreError:
            due = None
        if due is not None:
            timeout = max(0.0, min(timeout, (due - now()).total_seconds()))
        if timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _gather(self) -> None:
        while self.max_inflight - len(self._inflight) < self._min_claim:
            self._slot.clear()
            await self._slot.wait()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slot.set()

    async def _handle(self, item: QueueItem) -> None:
        metrics.observe_pickup_lag((now() - item.due_at).total_seconds(), item.kind.value)
        handler = self.handlers.get(item.kind)
        if handler is None:
            log.error("no handler for queue item", extra={"kind": item.kind.value})
            return
        try:
            await handler(item)
        except LeaseLostError:
            log.info("lease lost; result discarded",
                     extra={"item_id": item.id, "run_id": item.run_id})
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease stays; the item is rescued after it expires and retried then.
            log.exception("handler failed", extra={"item_id": item.id, "run_id": item.run_id})

    async def _renew_loop(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._stopping:
            await asyncio.sleep(interval)
            if not self._inflight:
                continue
            try:
                await self.store.lease_renew(owner=self.owner, until=now() + self.lease)
            except StoreError as exc:
                log.warning("lease renewal failed", extra={"error": str(exc)})

    async def _rescue_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.rescue_every.total_seconds())
            try:
                await self.rescue()
            except StoreError as exc:
                log.warning("lease rescue failed", extra={"error": str(exc)})

    async def rescue(self) -> list[Rescued]:
        """Make items with expired leases due again; hand exhausted ones to
        ``on_exhausted``. One pass of the rescue loop."""
        rescued = await self.store.lease_rescue_expired(now=now(),
                                                        max_expiries=self.max_expiries)
        for r in rescued:
            log.warning("lease expired; item rescued" if not r.exhausted
                        else "lease expired too often; giving up on the item",
                        extra={"item_id": r.item_id, "run_id": r.run_id,
                               "expiries": r.expiries})
            if r.exhausted and self.on_exhausted is not None:
                await self.on_exhausted(r)
        return rescued

    async def run_due(self) -> int:
        """Claim every item due now and handle it to the end; how many were handled.

        For tests that drive the engine in-process (with a fake clock): the claim loop
        does the same continuously.
        """
        handled = 0
        while True:
            at = now()
            items = await self.store.queue_claim(owner=self.owner, token=new_token(), now=at,
                                                 limit=self.batch, lease_until=at + self.lease)
            if not items:
                return handled
            await asyncio.gather(*(self._handle(item) for item in items))
            handled += len(items)
