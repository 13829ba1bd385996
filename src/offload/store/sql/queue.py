"""Leases and the queue: claim, renew, release, rescue."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from offload.clock import from_ms, now_ms, to_ms
from offload.models import HTTP_FUNCTION_ID, Event, ItemKind, QueueItem, Run, Step
from offload.store import admission, ops
from offload.store.base import Fence, Rescued
from offload.store.dashboard_queries import record_restarts
from offload.store.rows import (
    EVENT_COLS,
    RUN_COLS,
    STEP_COLS,
    TERMINAL_SQL,
    Tx,
    _in,
    row_event,
    row_item,
    row_run,
    row_step,
)
from offload.store.sql.write import WritePath

T = TypeVar("T")


EXHAUSTED_HOLD_MS = 60_000
"""An exhausted item of a live run waits this long for its run to be failed; if the
engine died before failing it, the item comes back and is retried."""


class QueueOps(WritePath):
    """``lease_*`` and ``queue_*``."""

    # -- leases and the queue ------------------------------------------------------------

    async def lease_renew(self, *, owner: str, until: datetime) -> int:
        """Extend every lease held by ``owner``; the number renewed."""
        def fn(tx: Tx) -> int:
            # Only live leases: an expired one may be rescued and re-claimed at any moment.
            tx.execute("UPDATE queue_items SET lease_expires_at = ? WHERE lease_owner = ? "
                       "AND lease_expires_at >= ?", (to_ms(until), owner, now_ms()))
            return tx.rowcount
        return await self._write(fn)

    async def lease_release(self, *, owner: str) -> int:
        """Hand back every lease ``owner`` holds (graceful shutdown); the number released."""
        def fn(tx: Tx) -> int:
            tx.execute("UPDATE queue_items SET lease_owner = NULL, lease_token = NULL, "
                       "lease_expires_at = NULL WHERE lease_owner = ?", (owner,))
            released = tx.rowcount
            if released:
                tx.notify = True
            return released
        return await self._write(fn)

    async def lease_expire_owned(self, *, owner_prefix: str, now: datetime) -> int:
        """Expire at ``now`` every lease whose owner starts with ``owner_prefix``."""
        def fn(tx: Tx) -> int:
            tx.execute("UPDATE queue_items SET lease_expires_at = ? WHERE lease_owner IS NOT "
                       "NULL AND substr(lease_owner, 1, ?) = ? AND lease_expires_at >= ?",
                       (to_ms(now) - 1, len(owner_prefix), owner_prefix, to_ms(now)))
            return tx.rowcount
        return await self._write(fn)

    async def lease_rescue_expired(self, *, now: datetime, max_expiries: int) -> list[Rescued]:
        """Make items with expired leases due again. An item past ``max_expiries`` is
        dropped, unless its run is live: then it is held back (due in
        ``EXHAUSTED_HOLD_MS``) for the caller to fail the run (``engine.runs``)."""
        def fn(tx: Tx) -> list[Rescued]:
            at = to_ms(now)
            rows = tx.execute(
                "UPDATE queue_items SET lease_owner = NULL, lease_token = NULL, "
                "lease_expires_at = NULL, expiries = expiries + 1, due_at = ? "
                "WHERE lease_owner IS NOT NULL AND lease_expires_at < ? "
                "RETURNING id, run_id, expiries, concurrency_key, concurrency_key2", (at, at))
            out: list[Rescued] = []
            admission.unblock(self, tx, [k for r in rows for k in r[3:5]])
            for item_id, run_id, expiries, _, _ in rows:
                exhausted = expiries >= max_expiries
                if exhausted:
                    live = run_id is not None and tx.execute(
                        f"SELECT 1 FROM runs WHERE id = ? AND status NOT IN {TERMINAL_SQL}",
                        (run_id,))
                    if live:
                        tx.execute("UPDATE queue_items SET due_at = ? WHERE id = ?",
                                   (at + EXHAUSTED_HOLD_MS, item_id))
                    else:
                        tx.execute("DELETE FROM queue_items WHERE id = ?", (item_id,))
                out.append(Rescued(item_id, run_id, expiries, exhausted))
            record_restarts(tx, [r.run_id for r in out], now)
            if rows:
                tx.notify = True
            return out
        return await self._write(fn)

    async def queue_claim(
        self, *, owner: str, token: str, now: datetime, limit: int, lease_until: datetime,
        kinds: tuple[ItemKind, ...] | None = None,
    ) -> list[QueueItem]:
        """Lease up to ``limit`` due items, earliest first; marks their runs running."""
        kind_values = [k.value for k in kinds] if kinds else []
        sql = self._claim_sql(len(kind_values))

        def fn(tx: Tx) -> list[QueueItem]:
            at = to_ms(now)
            rows = tx.execute(sql, (owner, token, to_ms(lease_until), at, *kind_values, limit))
            rows = ops.hold_paused(tx, rows, self.share_locked)  # paused functions, queues
            items = [row_item(r) for r in rows]
            keyed = [(r[0], r[3], lim) for r in rows
                     if (lim := admission.item_limits((r[10], *r[11:14])))]
            if keyed:
                revoked = admission.enforce_concurrency(self, tx, keyed, at)
                items = [i for i in items if i.id not in revoked]
            run_ids = list(dict.fromkeys(
                i.run_id for i in items if i.kind is ItemKind.RUN and i.run_id))
            if run_ids:
                # The runs come back with the claim, and for durable functions their steps
                # (the memo) and trigger events: the handlers read nothing before calling.
                runs = {r[0]: row_run(r) for r in tx.execute(
                    f"UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), "
                    f"updated_at = ? WHERE id IN {_in(run_ids)} AND status NOT IN "
                    f"{TERMINAL_SQL} RETURNING {RUN_COLS}", (at, at, *run_ids))}
                items = _with_runs(tx, items, runs)
            items.sort(key=lambda i: i.due_at)
            return items
        return await self._write(fn)

    async def queue_depth(self) -> dict[str, int]:
        """Unleased items per queue name."""
        rows = await self._read(lambda tx: tx.execute(
            "SELECT queue, COUNT(*) FROM queue_items WHERE lease_owner IS NULL GROUP BY queue"))
        return {r[0]: r[1] for r in rows}

    async def queue_next_due(self) -> datetime | None:
        """When the earliest unleased item becomes due."""
        # ORDER BY ... LIMIT 1, not MIN(): PostgreSQL answered MIN() by reading the whole
        # ready index (every queued item, with heap fetches), on every scheduler sleep.
        rows = await self._read(lambda tx: tx.execute(
            "SELECT due_at FROM queue_items WHERE lease_owner IS NULL AND blocked = 0 "
            "ORDER BY due_at LIMIT 1"))
        return from_ms(rows[0][0]) if rows and rows[0][0] is not None else None

    async def queue_release(self, *, fence: Fence, due_at: datetime) -> bool:
        """Give a claimed item back, due at ``due_at``; False if the lease moved on."""
        def fn(tx: Tx) -> bool:
            rows = tx.execute(
                "UPDATE queue_items SET lease_owner = NULL, lease_token = NULL, "
                "lease_expires_at = NULL, due_at = ? WHERE id = ? AND lease_token = ? "
                "RETURNING concurrency_key, concurrency_key2",
                (to_ms(due_at), fence.item_id, fence.lease_token))
            tx.notify = True
            if rows:
                admission.unblock(self, tx, rows[0])
            return bool(rows)
        return await self._write(fn)


def _with_runs(tx: Tx, items: list[QueueItem], runs: dict[str, Run]) -> list[QueueItem]:
    """The claimed items with their runs (``runs``: the live ones), and each durable
    function's steps and trigger events, read with two statements for the whole claim."""
    fn_ids = [i for i, r in runs.items() if r.function_id != HTTP_FUNCTION_ID]
    steps: dict[str, list[Step]] = {i: [] for i in fn_ids}
    events: dict[str, Event] = {}
    if fn_ids:
        for r in tx.execute(f"SELECT {STEP_COLS} FROM steps WHERE run_id IN {_in(fn_ids)} "
                            "ORDER BY run_id, position", fn_ids):
            steps[r[0]].append(row_step(r))
        event_ids = list(dict.fromkeys(e for i in fn_ids for e in runs[i].event_ids))
        if event_ids:
            events = {e.id: e for e in (row_event(r) for r in tx.execute(
                f"SELECT {EVENT_COLS} FROM events WHERE id IN {_in(event_ids)}", event_ids))}
    out: list[QueueItem] = []
    for item in items:
        if item.kind is not ItemKind.RUN or not item.run_id:
            out.append(item)
            continue
        run = runs.get(item.run_id)
        if run is None or run.function_id == HTTP_FUNCTION_ID:
            out.append(replace(item, carried=True, run=run))
            continue
        out.append(replace(item, carried=True, run=replace(run, steps=list(steps[run.id])),
                           events=[events[e] for e in run.event_ids if e in events]))
    return out
