"""Fires cron triggers: one run per (function, tick), across any number of engines.

Every second the service looks at each function with a ``cron`` trigger and
fires the ticks that came due since the last recorded one. Each tick is
committed with a unique ``(function, tick)`` row in the same transaction as its
run and its ``inngest/scheduled.timer`` event, so two engines that both see the
tick create one run between them; the loser's change writes nothing.

Missed ticks (policy): a tick more than :data:`LATE_AFTER` old when the service
sees it was missed (the engine was down). Of the missed ticks only the latest
``settings.cron_catchup`` are fired (default 1: "run once to catch up"; 0 skips
them); on-time ticks always fire. A function's first tick is the first one after
it was first synced. Jitter delays a tick's run, never the tick.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime, timedelta

from offload.clock import now
from offload.engine.background import cancel_and_wait
from offload.engine.cron import CronSchedule, jitter_for, parse_cron, ticks_between
from offload.engine.triggers import with_controls
from offload.errors import CronError, StoreError
from offload.ids import new_id
from offload.models import Function, ItemKind
from offload.protocol.function_config import Trigger
from offload.protocol.messages import scheduled_timer_event
from offload.store.base import Change, NewEvent, NewItem, NewRun, Store

log = logging.getLogger("offload.cron")

LATE_AFTER = timedelta(seconds=60)
"""A tick seen later than this after its time counts as missed."""
INTERVAL_S = 1.0
MAX_ON_TIME = 100


@functools.lru_cache(maxsize=1024)
def _schedule(text: str, jitter: str | None) -> CronSchedule | str:
    try:
        return parse_cron(text, jitter=jitter)
    except CronError as exc:
        return str(exc)


def cron_schedule(trigger: Trigger) -> CronSchedule:
    """A cron trigger's schedule, parsed once per (expression, jitter); CronError if bad."""
    found = _schedule(trigger.cron or "", trigger.jitter)
    if isinstance(found, str):
        raise CronError(found)
    return found


def cron_triggers(fn: Function) -> list[tuple[str, CronSchedule]]:
    """The valid cron triggers of a function, with their schedules."""
    out: list[tuple[str, CronSchedule]] = []
    for trigger in fn.spec.crons:
        try:
            out.append((trigger.cron or "", cron_schedule(trigger)))
        except CronError as exc:
            log.warning("bad cron trigger", extra={"function_id": fn.id, "error": str(exc)})
    return out


class CronService:
    """The cron loop of one engine."""

    def __init__(self, store: Store, *, catchup: int = 1) -> None:
        self.store = store
        self.catchup = max(0, catchup)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start firing ticks."""
        self._task = asyncio.create_task(self._loop(), name="offload-cron")

    async def stop(self) -> None:
        """Stop the loop."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick(now())
            except StoreError as exc:
                log.warning("cron tick failed", extra={"error": str(exc)})
            except Exception:
                log.exception("cron tick failed")
            await asyncio.sleep(INTERVAL_S)

    def due_ticks(self, schedule: CronSchedule, since: datetime, at: datetime) -> list[datetime]:
        """Ticks after ``since`` up to ``at``: on-time ones, plus the latest missed ones."""
        late_line = at - LATE_AFTER
        missed = ticks_between(schedule, since, min(late_line, at), self.catchup, newest=True) \
            if since < late_line else []
        on_time = ticks_between(schedule, max(since, late_line), at, MAX_ON_TIME)
        return missed + on_time

    async def tick(self, at: datetime) -> int:
        """Fire every tick due at ``at``; the number of runs this engine created."""
        fired = 0
        for fn in await self.store.function_list():
            triggers = cron_triggers(fn)
            if not triggers:
                continue
            last = await self.store.cron_last_tick(function_id=fn.id)
            since = last if last is not None else fn.created_at
            for text, schedule in triggers:
                for tick in self.due_ticks(schedule, since, at):
                    if await self.fire(fn, text, schedule, tick, at):
                        fired += 1
        return fired

    async def fire(self, fn: Function, text: str, schedule: CronSchedule, tick: datetime,
                   at: datetime) -> bool:
        """Create the run of one tick; False if another engine already did."""
        event = scheduled_timer_event(text, tick)
        event_id = new_id()
        due = max(tick, at) + jitter_for(schedule, fn.id, tick)
        change = Change(
            cron_tick=(fn.id, tick),
            events=[NewEvent(id=event_id, name=event["name"], data=event["data"],
                             ts=event["ts"], received_at=at, fanout=False)],
            runs=[with_controls(NewRun(
                id=new_id(), function_id=fn.id, app_id=fn.app_id, created_at=at,
                event_ids=[event_id],
                items=[NewItem(kind=ItemKind.RUN, due_at=due, payload={"attempt": 0})]),
                fn, [{**event, "id": event_id}])])
        result = await self.store.apply(change)
        return result.cron_fired
